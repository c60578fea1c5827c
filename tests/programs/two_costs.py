# Two functions with loops of their own; with "fast" the second does a tenth
# of its work, as after an optimization, and the first the same as before.
import sys


def steady(n):
    s = 0
    for i in range(n):
        s += i % 7
    return s


def optimized(n, fast):
    s = 0
    for i in range(n // 10 if fast else n):
        s += i % 11
    return s


n = int(sys.argv[1])
fast = len(sys.argv) > 2 and sys.argv[2] == "fast"
print(steady(n), optimized(3 * n, fast))
