# scripts/bench-overhead's steady-state workload: one hot loop (compiled once,
# then run for a fixed amount of work, about 3 s under plain pypy3 here).
# Prints its own wall and CPU time around the work: "elapsed WALL CPU".
import sys
import time


def step(i, acc):
    if i % 5 == 0:
        return acc + (i * 3) % 7
    return acc ^ (i & 0xff)


def work(n):
    acc = 0
    for i in range(n):
        acc = step(i, acc)
    return acc


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000000
    wall, cpu = time.time(), time.process_time()
    result = work(n)
    print("result", result)
    print("elapsed %.6f %.6f" % (time.time() - wall, time.process_time() - cpu), flush=True)


main()
