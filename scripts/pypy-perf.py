"""Run a Python program under PyPy so that `perf inject --jit` can name its JIT code.

Usage: JITPROF_PERF_DIR=DIR perf record -k mono -- pypy3 scripts/pypy-perf.py PROGRAM [ARGS...]

Writes DIR/jit-PID.jitlog (PyPy's jitlog, from the first line) and maps
DIR/jit-PID.dump into the process, the marker perf records so that inject
finds the dump. Afterwards:

    jitprof export DIR/jit-PID.jitlog --format jitdump --pid PID -o DIR/jit-PID.dump
    perf inject --jit -i perf.data -o perf.jit.data && perf report -i perf.jit.data
"""
import mmap
import os
import runpy
import struct
import sys
import time


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    directory = os.path.abspath(os.environ.get("JITPROF_PERF_DIR", "."))
    pid = os.getpid()
    base = os.path.join(directory, "jit-%d" % pid)
    # A valid jitdump header; jitprof writes the records into this file later.
    fd = os.open(base + ".dump", os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    os.write(fd, struct.pack("<IIIIIIQQ", 0x4A695444, 1, 40, 62, 0, pid, time.monotonic_ns(), 0))
    # perf records executable mappings: this one tells inject where the dump is.
    marker = mmap.mmap(fd, 40, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_EXEC)
    import _jitlog
    _jitlog.enable(os.open(base + ".jitlog", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        _jitlog.disable()  # flushes the counters
        marker.close()
        os.close(fd)


main()
