"""With --json, a command that stops on an error before writing any JSON still writes one
line on stdout (the `error` event), so a log pipeline reading stdout sees why cron's run
did nothing; a command that did write JSON (a build's `build.failed`, validate's result)
writes no second one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from tests.e2e.conftest import Cloud


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]],
                                                                   list[str]]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err.splitlines()


def _bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: ws\nwindows: {}\n")
    return path


def test_an_invalid_spec_is_one_error_event_with_the_lines_stderr_shows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, events, err = _run(capsys, "build", str(_bad_spec(tmp_path)), "--json")
    assert code == 2
    [event] = events
    assert event["event"] == "error"
    assert event["command"] == "build"
    assert event["exit_code"] == 2
    assert event["build_id"] is None and event["family"] is None and event["time"]
    assert [f"osbuild: error: {line}" for line in event["errors"]] == err
    assert any("windows.iso_image" in line for line in event["errors"]), err


def test_the_error_event_reaches_a_pipe_from_the_cli_process(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "osbuild", "build", str(_bad_spec(tmp_path)),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    [line] = done.stdout.splitlines()
    assert json.loads(line)["event"] == "error"
    assert "osbuild: error:" in done.stderr


def test_without_json_stdout_stays_empty(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["build", str(_bad_spec(tmp_path))]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "windows" in err


def test_images_and_gc_errors_are_events_naming_the_command(
        cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    code, events, err = _run(capsys, "images", "rollback", "--family", "nosuch",
                             "--os-cloud", cloud.sim.cloud_name, "--json")
    assert code == 2
    assert [(e["event"], e["command"], e["errors"]) for e in events] == [
        ("error", "images rollback", ["family nosuch: no images"])]
    assert err == ["osbuild: error: family nosuch: no images"]
    code, events, _err = _run(capsys, "gc", "--os-cloud", "nope", "--json")
    assert code == 2
    [event] = events
    assert (event["event"], event["command"]) == ("error", "gc")
    assert "cloud nope" in event["errors"][0]


def test_a_build_that_failed_says_so_once(cloud: Cloud) -> None:
    run = cloud.build(cloud.spec(builder={"flavor": "m1.nope"}))
    assert run.exit_code == 2
    assert run.events[-1]["event"] == "build.failed"
    assert [e for e in run.events if e["event"] == "error"] == []


def test_validate_writes_its_own_result_only(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, events, err = _run(capsys, "validate", str(_bad_spec(tmp_path)), "--json")
    assert code == 2 and err == []
    [result] = events
    assert result["valid"] is False and "event" not in result


def test_a_usage_error_is_an_error_event_too(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # argparse writes its usage and message on stderr only; cron's log shipper reads stdout.
    code, events, err = _run(capsys, "build", str(_bad_spec(tmp_path)), "--json", "--bogus")
    assert code == 2
    assert [(e["event"], e["command"], e["exit_code"], e["errors"]) for e in events] == [
        ("error", "build", 2, ["osbuild: unrecognized arguments: --bogus"])]
    assert err[-1] == "osbuild: error: unrecognized arguments: --bogus"
    # The top parser finds unrecognized options, and knows the sub-command only.
    code, events, _err = _run(capsys, "images", "rollback", "--json", "--keep")
    assert [(e["command"], e["errors"]) for e in events] == [
        ("images", ["osbuild: unrecognized arguments: --keep"])]
    code, events, _err = _run(capsys, "validate", "--json")
    assert (code, [(e["command"], e["errors"]) for e in events]) == (2, [
        ("validate", ["osbuild validate: the following arguments are required: SPEC"])])
    # Without --json, or with it only after `--`, stdout stays empty.
    for argv in (("build", "--bogus"), ("build", "--bogus", "--", "--json")):
        code, events, _err = _run(capsys, *argv)
        assert (code, events) == (2, [])


def test_a_usage_error_event_reaches_a_pipe_from_the_cli_process() -> None:
    done = subprocess.run([sys.executable, "-m", "osbuild", "gc", "--json", "--older-than"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    [line] = done.stdout.splitlines()
    event = json.loads(line)
    assert (event["event"], event["command"]) == ("error", "gc")
    assert event["errors"] == ["osbuild gc: argument --older-than: expected one argument"]
