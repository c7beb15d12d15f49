"""What writing report.html costs at the end of a build: a benchmark that prints numbers.

Builds report.json folders of growing size (console lines, update passes, events), renders
each page N times and prints the median render time and the page size. The page keeps the
transcript's last lines only (osbuild.report.console.MAX_LINES), so time and size level off.

    python benchmarks/report_render.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osbuild.report.build import write_build_html  # noqa: E402

NONCE = "0" * 32


def make_build(folder: Path, lines: int, passes: int) -> Path:
    folder.mkdir(parents=True)
    console, timeline = [], []
    for n in range(passes):
        console += ["SeaBIOS (version 1.16.3)", f"OSBUILD:{NONCE}:updates:info:pass {n + 1}"]
        timeline.append({"at": 1000.0 + n * 600, "event": "stage", "during": "install",
                         "stage": "updates", "status": "info", "detail": f"pass {n + 1}"})
    console += [f"cloudbase-init log line {n} <with> & markup" for n in range(lines)]
    (folder / "console.log").write_text("\n".join(console) + "\n")
    report = {"build_id": "20261126t031500-a1b2c3", "family": "bench", "result": "succeeded",
              "exit_code": 0, "duration_seconds": 1000.0 + passes * 600, "timeline": timeline,
              "stages": [{"stage": "updates", "started": 900.0, "finished": 999.0 + passes * 600,
                          "status": "ok"}],
              "resources": [{"kind": "volume", "id": f"v{n}", "name": f"v{n}", "step": "volumes",
                             "deleted": True} for n in range(20)],
              "api_calls": {"compute GET": 900, "image GET": 40}}
    path = folder / "report.json"
    path.write_text(json.dumps(report))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'console lines':>14} {'passes':>7} {'median ms':>10} {'page KiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for lines, passes in ((100, 3), (4_000, 10), (100_000, 50), (1_000_000, 100)):
            path = make_build(Path(tmp) / f"{lines}-{passes}", lines, passes)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                page = write_build_html(path)
                times.append(time.perf_counter() - start)
            print(f"{lines:>14} {passes:>7} {statistics.median(times) * 1000:>10.1f} "
                  f"{page.stat().st_size / 1024:>9.0f}")


if __name__ == "__main__":
    main()
