# Allocation-heavy: much of its time is in PyPy's GC (minor and major
# collections) and its allocation paths.
import sys


class Node:
    def __init__(self, value, next):
        self.value = value
        self.next = next


def churn(n):
    keep = []
    for i in range(n):
        head = None
        for j in range(50):
            head = Node(j, head)
        keep.append((head, {str(i): [i] * 10}))
        if len(keep) > 5000:
            keep = []
    return len(keep)


print(churn(int(sys.argv[1]) if len(sys.argv) > 1 else 100000))
