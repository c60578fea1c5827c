# Three busy threads known by their Python names: the main thread
# ("MainThread"), "cruncher", and one started as "hasher-0" that renames
# itself "hasher-1" before its work: what report, top, the exports and the
# viewer must call them (tests/report_test.cpp, tests/browser_test.cpp).
import sys
import threading


def spin(n):
    total = 0
    for i in range(n):
        total += i % 7
    return total


def hash_rounds(n):
    threading.current_thread().name = "hasher-1"
    spin(n)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000000
    workers = [threading.Thread(target=spin, args=(n,), name="cruncher"),
               threading.Thread(target=hash_rounds, args=(n,), name="hasher-0")]
    for worker in workers:
        worker.start()
    spin(n)
    for worker in workers:
        worker.join()


main()
