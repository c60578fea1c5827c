# Starts a child PyPy process (subprocess, which forks and execs) that runs
# child_work() while this process runs parent_work(); prints each pid.
import subprocess
import sys
import time


def spin(seconds):
    end = time.time() + seconds
    total = 0
    while time.time() < end:
        for i in range(1000):
            total += i % 7
    return total


def child_work(seconds):
    return spin(seconds)


def parent_work(seconds):
    return spin(seconds)


if len(sys.argv) > 1 and sys.argv[1] == "child":
    print("child", __import__("os").getpid(), flush=True)
    child_work(2.5)
else:
    print("parent", __import__("os").getpid(), flush=True)
    child = subprocess.Popen([sys.executable, __file__, "child"])
    parent_work(2.5)
    child.wait()
