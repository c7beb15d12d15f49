"""No test writes to the user's real state directory (~/.local/state/osbuild)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.resources import examples_dir
from osbuild.unattended.state import default_state_dir
from osbuild_sim.media import cloudbase_msi_standin

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

REAL_STATE_DIR = default_state_dir({"HOME": str(Path.home())})


def test_the_default_state_dir_is_a_temporary_folder() -> None:
    state = default_state_dir()
    assert state != REAL_STATE_DIR
    assert not state.is_relative_to(Path.home() / ".local")


def test_a_build_without_state_flags_writes_to_the_temporary_folder(
        fast_sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # No --state-dir, no --log-dir, and this test sets no XDG_STATE_HOME of its own: what
    # a test in any tier does when it forgets them.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE",
                       str(fast_sim.write_clouds_yaml(tmp_path / "clouds.yaml")))
    spec = tmp_path / "spec.yaml"
    spec.write_text((examples_dir() / "ws2022-standard.yaml").read_text())
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
    code = main(["build", str(spec), "--os-cloud", fast_sim.cloud_name, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    started = next(json.loads(line) for line in out.splitlines()
                   if line.startswith("{") and json.loads(line)["event"] == "build.started")
    build_id = started["build_id"]
    assert (default_state_dir() / "builds" / f"{build_id}.json").is_file()
    assert not (REAL_STATE_DIR / "builds" / f"{build_id}.json").exists()
    assert not Path(started["log_dir"]).is_relative_to(REAL_STATE_DIR)
