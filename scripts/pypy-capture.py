"""Run a Python program under PyPy with _jitlog and _vmprof enabled from its first line.

Usage: pypy3 scripts/pypy-capture.py [--jitlog FILE] [--profile FILE] [--period S]
                                     [--memory] [--native] [--real-time] PROGRAM [ARGS...]

The program sees its own argv, runs as __main__, and keeps its exit status.
Both logs are closed cleanly on normal exit, sys.exit() and uncaught exceptions.
"""
import os
import runpy
import sys


def parse_args(argv):
    opts = {"jitlog": None, "profile": None, "period": 0.001,
            "memory": 0, "native": 0, "real_time": 0}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        arg = argv[i]
        if arg in ("--jitlog", "--profile", "--period"):
            if i + 1 >= len(argv):
                sys.exit("pypy-capture: %s needs a value" % arg)
            key = arg[2:]
            opts[key] = float(argv[i + 1]) if key == "period" else argv[i + 1]
            i += 2
        elif arg in ("--memory", "--native", "--real-time"):
            opts[arg[2:].replace("-", "_")] = 1
            i += 1
        else:
            sys.exit("pypy-capture: unknown option %s" % arg)
    if i >= len(argv):
        sys.exit(__doc__)
    return opts, argv[i:]


def main():
    opts, program = parse_args(sys.argv[1:])
    import _jitlog
    import _vmprof

    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    profile_fd = None
    if opts["jitlog"]:
        _jitlog.enable(os.open(opts["jitlog"], flags, 0o644))
    if opts["profile"]:
        profile_fd = os.open(opts["profile"], flags, 0o644)
        _vmprof.enable(profile_fd, opts["period"], opts["memory"], 0,
                       opts["native"], opts["real_time"])
    sys.argv = program
    sys.path[0] = os.path.dirname(os.path.abspath(program[0]))
    try:
        runpy.run_path(program[0], run_name="__main__")
    finally:
        if profile_fd is not None:
            _vmprof.disable()
            os.close(profile_fd)
        if opts["jitlog"]:
            _jitlog.disable()  # flushes the trace counters and closes the fd


main()
