# Runs a Python program between two readings of (the CPU's timestamp counter,
# CLOCK_MONOTONIC in ns), written to stderr as
# "tsc-clock START_TSC START_NS END_TSC END_NS", so that a test can date PyPy's
# own log sections (which carry the counter) without jitprof.
import runpy
import sys
import time

import __pypy__


def now():
    return __pypy__.debug_read_timestamp(), time.monotonic_ns()


start = now()
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    end = now()
    sys.stderr.write("tsc-clock %d %d %d %d\n" % (start + end))
