"""How long the test suite takes, per file: a benchmark that prints numbers.

Runs `python -m pytest --durations=0` (the README's command, or the pytest arguments given)
and prints the wall time, then every file's setup + call + teardown seconds, slowest first.
Under xdist's `--dist loadfile` a file runs on one worker: the slowest files bound the
wall time, and the total over two workers is about twice it.

    python benchmarks/suite_time.py [--top 25] [-- PYTEST ARGS...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_DURATION = re.compile(r"^\s*([\d.]+)s (?:call|setup|teardown)\s+([^:\s]+)::", re.M)


def per_file(output: str) -> Counter[str]:
    seconds: Counter[str] = Counter()
    for value, path in _DURATION.findall(output):
        seconds[path] += float(value)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25, help="files to list (default 25)")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--durations=0", "-q", "-p", "no:cacheprovider",
         *args.pytest_args], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    seconds = per_file(done.stdout)
    print(f"wall {wall:.0f} s, test time {sum(seconds.values()):.0f} s: {summary}")
    for path, value in seconds.most_common(args.top):
        print(f"{value:7.1f} s  {path}")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
