# Spins at the bottom of a recursion of DEPTH Python calls, for SECONDS:
# every sample's Python stack holds DEPTH frames of descend() (the sampler
# reads at most 256: deeper stacks are marked truncated).
import sys
import time


def spin(seconds):
    end = time.time() + seconds
    total = 0
    while time.time() < end:
        for i in range(1000):
            total += i % 7
    return total


def descend(depth, seconds):
    if depth <= 1:
        return spin(seconds)
    return descend(depth - 1, seconds) + 1


def main():
    depth = int(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.5
    sys.setrecursionlimit(depth + 100)
    descend(depth, seconds)


main()
