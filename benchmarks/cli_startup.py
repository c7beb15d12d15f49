"""How fast `osbuild --help` (and each sub-command's --help) answers: a benchmark that prints
numbers.

Runs each command line N times as a fresh process and prints the median and the best wall
time, then the ten slowest imports of `osbuild --help` from `python -X importtime`.

    python benchmarks/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osbuild.cli import COMMANDS as SUB_COMMANDS  # noqa: E402

COMMANDS = (["--help"], *([name, "--help"] for name in SUB_COMMANDS))


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "osbuild", *argv], env=_env(), check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def slowest_imports(argv: list[str], count: int = 10) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the slowest imports, from -X importtime."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "osbuild", *argv],
                          env=_env(), check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for argv in COMMANDS:
        times = wall_times(argv, args.runs)
        print(f"osbuild {' '.join(argv):<16} median {statistics.median(times):.3f} s  "
              f"best {min(times):.3f} s  ({args.runs} runs)")
    print("\nslowest imports of `osbuild --help` (cumulative):")
    for micros, module in slowest_imports(["--help"]):
        print(f"  {micros / 1000:7.1f} ms  {module}")


if __name__ == "__main__":
    main()
