# A long-running "service" without JITLOG, for attach: one hot function
# called through two Python callers. Prints "ready" once running.
import sys
import time


def hot_function(n):
    total = 0
    for i in range(n):
        total += (i * 31) % 17
    return total


def handle_request():
    return hot_function(20000)


def serve_forever(seconds):
    end = time.time() + seconds
    print("ready", flush=True)
    while time.time() < end:
        handle_request()


serve_forever(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
