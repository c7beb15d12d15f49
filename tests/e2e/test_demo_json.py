"""`osbuild demo --json --keep` as README's "Output" describes it: stdout is events only, each
event carries the fields README's event table names, and the kept log folder holds the
console transcript and both reports, which `osbuild report` writes again."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from osbuild.cli import main

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
COMMON = {"event", "time", "build_id", "family"}


def _readme_event_fields() -> list[tuple[set[str], set[str]]]:
    """(event names, field names) per row of README's `--json` event table."""
    table = README.read_text().split("<!-- events -->", 1)[1].split("<!-- /events -->", 1)[0]
    rows = []
    for line in table.splitlines():
        if line.startswith("| `"):
            names, fields = line.split("|")[1:3]
            rows.append((set(re.findall(r"`([a-z.]+)`", names)),
                         set(re.findall(r"`([a-z_]+)`", fields))))
    return rows


def test_demo_json_prints_only_events_with_the_documented_fields(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # The demo points OS_CLIENT_CONFIG_FILE at its own clouds.yaml; restore it afterwards.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where --keep leaves the files
    # The example by its family name, as `osbuild status` shows it (the file name works too).
    assert main(["demo", "--json", "--keep", "--spec", "ws2022-standard"]) == 0
    out, err = capsys.readouterr()
    *events, verdict = [json.loads(line) for line in out.splitlines()]  # each line one object
    assert events and all(set(event) >= COMMON for event in events)
    # The demo's own result comes last, as gc's and status's one line: nothing left behind.
    assert (verdict["command"], verdict["exit_code"], verdict["leftovers"]) == ("demo", 0, [])
    seen: dict[str, set[str]] = {}
    for event in events:
        seen.setdefault(event["event"], set()).update(event)
    for names, fields in _readme_event_fields():
        carried = set().union(*(seen[name] for name in names if name in seen))
        if carried:
            assert fields <= carried, (sorted(names), sorted(fields - carried))
    assert {"build.started", "build.succeeded", "stage", "verify.passed"} <= set(seen)
    # A newcomer's first run has nothing to warn about (every few runs said "console: more
    # than 39 lines since the last poll", a routine re-ask after a reboot).
    assert [e["message"] for e in events if e["event"] == "warning"] == []

    kept = re.search(r"demo files kept in (\S+)", err)
    assert kept, err
    assert verdict["kept"] == kept[1]
    assert Path(kept[1]).parent == tmp_path
    (log_dir,) = (Path(kept[1]) / "logs").iterdir()
    assert log_dir.name == events[0]["build_id"]
    for name in ("console.log", "report.json", "report.html", "verify-console.log"):
        assert (log_dir / name).is_file(), name

    again = tmp_path / "again.html"
    assert main(["report", str(log_dir / "report.json"), "--html", str(again)]) == 0
    assert again.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "20990101t000000-ffffff"]) == 2
