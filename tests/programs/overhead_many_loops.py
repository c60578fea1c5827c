# scripts/bench-overhead's JIT-heavy workload: COUNT (2400) distinct functions
# made with exec, each with a hot loop of its own and a branch that becomes a
# bridge, so PyPy traces and compiles thousands of loops and bridges (tracing
# and the backend take about 2 s of the 3 s here). Each function runs ROUNDS
# (1) times over N (20000) items.
# Prints its own wall and CPU time around the work: "elapsed WALL CPU".
import sys
import time


def make(k):
    namespace = {}
    exec(
        "def loop_%d(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        if i %% %d == 0:\n"
        "            total += (i * %d) %% 7\n"
        "        else:\n"
        "            total ^= i + %d\n"
        "    return total\n" % (k, 3 + k % 5, k + 1, k),
        namespace,
    )
    return namespace["loop_%d" % k]


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2400
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    wall, cpu = time.time(), time.process_time()
    functions = [make(k) for k in range(count)]
    result = 0
    for _ in range(rounds):
        for function in functions:
            result += function(n)
    print("result", result)
    print("elapsed %.6f %.6f" % (time.time() - wall, time.process_time() - cpu), flush=True)


main()
