# Compiles many distinct loops (default 1200): each generated function has a
# hot loop of its own, so the jitlog holds at least that many traces.
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
functions = []
for k in range(count):
    namespace = {}
    exec(
        "def loop_%d(n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        total += (i * %d) %% 7\n"
        "    return total\n" % (k, k + 1),
        namespace,
    )
    functions.append(namespace["loop_%d" % k])
print(sum(function(3000) for function in functions))
