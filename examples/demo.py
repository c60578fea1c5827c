# jitprof demo: a small word-frequency and prime-sieve workload that keeps
# PyPy's JIT busy for a second or two, with loops, bridges and inlined calls.
import sys


def sieve(limit):
    flags = [True] * (limit + 1)
    flags[0] = flags[1] = False
    for n in range(2, int(limit ** 0.5) + 1):
        if flags[n]:
            for multiple in range(n * n, limit + 1, n):
                flags[multiple] = False
    return [n for n, is_prime in enumerate(flags) if is_prime]


def word_of(n):
    return "w%d" % (n % 997)


def count_words(count):
    counts = {}
    for i in range(count):
        word = word_of(i * 7919)
        counts[word] = counts.get(word, 0) + 1
    return counts


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    primes = 0
    for _ in range(scale):
        primes += len(sieve(2000000))
        words = count_words(400000)
    print("primes:", primes, "distinct words:", len(words))


main()
