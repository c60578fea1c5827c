# A hot loop in f that calls g; the JIT inlines g into f's loop and the
# rarely taken branch becomes a bridge.
import sys


def g(x):
    return x * 3 + 1


def f(n):
    total = 0
    for i in range(n):
        if i % 7 == 0:
            total += g(i)
        else:
            total -= 1
    return total


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000000
    for _ in range(20):
        f(n)
    print(f(n))


main()
