# Recursive calls compile to call_assembler, which makes PyPy log
# TMP_CALLBACK and REDIRECT_ASSEMBLER records.
import sys


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def my_func_sum(items):
    total = 0
    for item in items:
        total += fib(item)
    return total


n = int(sys.argv[1]) if len(sys.argv) > 1 else 22
print(my_func_sum([n] * 4))
