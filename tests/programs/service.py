# A long-running PyPy program for `jitprof attach`: prints "ready", keeps f's
# loop hot for argv[1] seconds, starts one more thread after argv[2] seconds,
# and ends with exit status 3 so that a test can tell it is unchanged.
import sys
import threading
import time


def g(x):
    return (x * 7 + 3) % 1000003  # g: the hot arithmetic


def f(n):
    total = 0
    for i in range(n):  # f: the hot loop
        total += g(i)
    return total


def late_worker():
    print("late thread", f(20000000) > 0, flush=True)


def start_late_thread(delay):
    time.sleep(delay)
    threading.Thread(target=late_worker).start()


seconds, delay = float(sys.argv[1]), float(sys.argv[2])
threading.Thread(target=start_late_thread, args=(delay,), daemon=True).start()
print("ready", flush=True)
deadline = time.time() + seconds
rounds = 0
while time.time() < deadline:
    f(200000)
    rounds += 1
print("done", rounds > 0, flush=True)
sys.exit(3)
