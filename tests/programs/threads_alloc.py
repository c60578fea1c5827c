# Two threads that allocate: their JIT code calls PyPy's assembler helpers
# (allocation slow paths) and the GC, and they contend for the GIL.
import sys
import threading


def work(n):
    out = []
    for i in range(n):
        out.append(str(i) * 3)
        if len(out) > 1000:
            out = []
    return len(out)


n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000000
threads = [threading.Thread(target=work, args=(n,)) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
