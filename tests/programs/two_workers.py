# Two worker threads run different Python functions at the same time while
# the main thread only joins them: each sample's Python stack must be its own
# thread's. Prints each worker's native thread id.
import sys
import threading
import time


def alpha_step(i):
    return (i * 7 + 3) % 11


def worker_alpha(seconds):
    end = time.time() + seconds
    total = 0
    while time.time() < end:
        for i in range(2000):
            total += alpha_step(i)
    return total


def beta_step(i):
    return (i ^ 0x5a) % 13


def worker_beta(seconds):
    end = time.time() + seconds
    total = 0
    while time.time() < end:
        for i in range(2000):
            total += beta_step(i)
    return total


def join_workers(workers):
    for worker in workers:
        worker.join()


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    ready = threading.Barrier(3)

    def run(function, name):
        # One write per line: two threads printing at once must not interleave.
        sys.stdout.write(f"{name} {threading.get_native_id()}\n")
        sys.stdout.flush()
        ready.wait()
        function(seconds)

    workers = [threading.Thread(target=run, args=(worker_alpha, "alpha")),
               threading.Thread(target=run, args=(worker_beta, "beta"))]
    for worker in workers:
        worker.start()
    ready.wait()
    join_workers(workers)


main()
