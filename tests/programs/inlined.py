# The correlator's known workload: a hot loop in f that calls g, which the
# JIT inlines into the loop; g's arithmetic is most of the loop's work.
import sys


def g(x):
    return (x * x + 3 * x + 7) % 1009


def f(n):
    total = 0
    for i in range(n):
        total += g(i)
    return total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30000000
    print(f(n))


main()
