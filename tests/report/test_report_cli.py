"""`osbuild report`: finds a build's report by id or path, exit 2 for what it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuild.cli import main
from osbuild.unattended.state import BuildState, StateStore

from .helpers import BUILD_ID, parse, text_of, write_report


def test_by_path_writes_report_html_beside_it(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report(tmp_path / BUILD_ID)
    assert main(["report", str(path)]) == 0
    written = tmp_path / BUILD_ID / "report.html"
    assert capsys.readouterr().out.strip() == str(written)
    assert text_of(parse(written.read_text()), "outcome") == "failed"


def test_by_build_id_through_the_state_folder(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "elsewhere"
    write_report(logs / BUILD_ID)
    store = StateStore(tmp_path / "state")
    store.save(BuildState(build_id=BUILD_ID, family="f", cloud="c", nonce="0" * 32,
                          spec_path="/s.yaml", spec_digest="d", log_dir=str(logs)))
    out = tmp_path / "page.html"
    assert main(["report", BUILD_ID, "--state-dir", str(store.root), "--html", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "msiexec exited 1603" in out.read_text()


def test_by_build_id_in_the_default_log_folder(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    write_report(state_dir / "builds" / BUILD_ID)
    assert main(["report", BUILD_ID, "--state-dir", str(state_dir)]) == 0
    assert (state_dir / "builds" / BUILD_ID / "report.html").is_file()


@pytest.mark.parametrize(("argument", "message"), [
    ("20261126t031500-ffffff", "build 20261126t031500-ffffff: no report.json in "),
    ("no-such-file.json", "no-such-file.json: no such report file, and not a build id"),
    ("garbage.json", "garbage.json: not a JSON build report"),
    ("foreign.json", "foreign.json: not an osbuild build report (no build_id)"),
])
def test_what_it_cannot_read_is_exit_2_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argument: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text('{"hello": 1}')
    assert main(["report", argument, "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_unwritable_destination_is_exit_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report(tmp_path / "b")
    assert main(["report", str(path), "--html", str(tmp_path / "missing" / "x.html")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_a_running_build_has_no_report_yet(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = StateStore(tmp_path / "state")
    store.save(BuildState(build_id=BUILD_ID, family="f", cloud="c", nonce="0" * 32,
                          spec_path="/s.yaml", spec_digest="d", log_dir=str(tmp_path)))
    assert main(["report", BUILD_ID, "--state-dir", str(store.root)]) == 2
    assert "no report.json yet: it is running" in capsys.readouterr().err
