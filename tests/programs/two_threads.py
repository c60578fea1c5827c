# A hot loop on the main thread and the same loop on a second thread, both
# JIT-compiled: the program of the perf records fixture (scripts/make-fixtures),
# with samples of two threads, a fork (the thread's clone) and two exits. Each
# thread keeps to a CPU of its own, so that the fixture's two rings both hold
# samples, and the second thread's fork sits in another ring than its samples.
import ctypes
import sys
import threading

libc = ctypes.CDLL(None, use_errno=True)


def keep_to_cpu(cpu):
    mask = ctypes.c_ulong(1 << cpu)
    if libc.sched_setaffinity(0, ctypes.sizeof(mask), ctypes.byref(mask)) != 0:
        raise OSError(ctypes.get_errno(), "sched_setaffinity")


def spin(n):
    total = 0
    for i in range(n):
        total += i % 7
    return total


def spin_on_cpu(cpu, n):
    keep_to_cpu(cpu)
    spin(n)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000000
    keep_to_cpu(0)  # the clone too: the fork record is in ring 0
    worker = threading.Thread(target=spin_on_cpu, args=(1, n))
    worker.start()
    spin(n)
    worker.join()


main()
