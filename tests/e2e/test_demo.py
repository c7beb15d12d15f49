"""`osbuild demo`, README's first command, as a newcomer runs it: a subprocess, human output
(test_demo_json.py has --json)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds per test (a build in the simulated cloud, a subprocess): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("OS_")}  # the demo needs no cloud of the user's
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return subprocess.run([sys.executable, "-m", "osbuild", "demo", *extra],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_demo_human_output_ends_with_the_image_and_nothing_left(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("simulated cloud at http://127.0.0.1:")
    assert "ws2022-standard in " in out and ": built image ws2022-std-" in out
    assert "\nnothing left behind in the simulated cloud\n\nnext: " in out
    # The report and page the summary named are deleted with the demo's folder: it says so,
    # and how to keep them.
    [page] = re.findall(r"page: (\S+)", out)
    assert not Path(page).exists()
    assert re.search(r"^demo files deleted \(\S+: the report and page named above, the "
                     r"logs\); osbuild demo --keep keeps them$", out.rstrip(), re.M)
    # The image in three lines: its size, what Nova boots it with, where the rest is.
    [image] = re.findall(r"^image ws2022-std-\S+ \((\S+)\)$", out, re.M)
    assert image in summary_line(out)
    assert re.search(r"^  \d+\.\d GiB stored, a 40\.0 GiB disk; full build; boot test passed$",
                     out, re.M)
    assert "hw_disk_bus=virtio" in out and "sha512:" not in out
    assert "Traceback" not in proc.stderr
    assert "warning" not in proc.stderr.lower()
    # The event lines count on the build's clock, as the summary does (600x: hours, not the
    # dozen wall seconds the demo takes).
    [done] = [line for line in proc.stderr.splitlines() if ": succeeded: image " in line]
    # Hours, whatever follows: 7230 s reads "2h30s" (format_duration drops a zero unit).
    assert re.match(r"\[\d+h(?:\d+m)?(?:\d+s)?\]", done), done
    # ...and the build's end is the duration the summary gives (it read ten minutes more:
    # the line came after the reports were written, a real second at 600x).
    summary = summary_line(out)
    assert done.split("]")[0].lstrip("[") == summary.rsplit(" in ", 1)[1], (done, summary)


def summary_line(out: str) -> str:
    [summary] = [line for line in out.splitlines() if ": built image " in line]
    return summary
