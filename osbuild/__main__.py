"""`python -m osbuild` and the `osbuild` console script: the command line.

The entry is this small module, not :mod:`osbuild.cli`, so that Ctrl-C while the command
line's own modules load exits 130 like any other interrupt (uncaught, Python would die by
SIGINT: -2 to a parent process). What runs before this module cannot be covered: the
interpreter's start-up and the ``site`` module (.pth files).
"""

import sys  # already loaded: nothing else is imported before the try


def run() -> int:
    try:
        from osbuild.cli import main

        return main()
    except KeyboardInterrupt:
        from osbuild.errors import EXIT_INTERRUPTED

        print("osbuild: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    code = run()
    # CPython marks a KeyboardInterrupt that ended a string exec (dataclasses and namedtuple
    # build their methods that way) as unhandled even when it was caught, and under
    # `python -m` then dies by SIGINT at exit instead of exiting 130 (Python/pythonrun.c
    # run_eval_code_obj sets the mark, Modules/main.c Py_RunMain acts on it). Every string
    # exec clears the mark before it runs.
    exec("")
    raise SystemExit(code)
