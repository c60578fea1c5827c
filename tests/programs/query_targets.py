# Shapes the query-language tests look for:
# - my_func_fib and other_fib recurse and are called from loops, so traces
#   call_assembler them, and their base cases become bridges;
# - target is called from seven distinct lines, helper from two;
# - make_points allocates objects that the optimizer removes (virtuals).
import sys


def my_func_fib(n):
    if n < 2:
        return n
    result = my_func_fib(n - 1) + my_func_fib(n - 2)
    if result % 3 == 0:  # a branch after the recursive calls: a guard whose bridge is in my_func_fib
        result += 1
    return result


def other_fib(n):
    if n < 2:
        return n
    result = other_fib(n - 1) + other_fib(n - 2)
    if result % 3 == 0:
        result += 1
    return result


def my_func_driver(rounds, n):
    total = 0
    for _ in range(rounds):
        total += my_func_fib(n)
    return total


def other_driver(rounds, n):
    total = 0
    for _ in range(rounds):
        total += other_fib(n)
    return total


def target(x):
    return x * 2 + 1


def helper(x):
    return x - 1


def calls(n):
    total = 0
    for i in range(n):
        total += target(i)      # call site 1
        total -= target(i + 1)  # call site 2
        total += target(i + 2)  # call site 3
        total -= target(i + 3)  # call site 4
        total += target(i + 4)  # call site 5
        total -= target(i + 5)  # call site 6
        total += target(i + 6)  # call site 7
        total += helper(i)      # helper's site 1
        total -= helper(i + 1)  # helper's site 2
    return total


class Point(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y


def make_points(n):
    total = 0
    for i in range(n):
        point = Point(i, i + 1)  # never escapes: the optimizer removes the allocation
        total += point.x * point.y
    return total


scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
print(my_func_driver(20 * scale, 20), other_driver(20 * scale, 20), calls(1000000 * scale),
      make_points(1000000 * scale))
