"""Fixtures for the cron-operation tests: the CLI with a state directory, as a subprocess too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.unattended.state import BuildState, StateStore
from osbuild_sim import SimCloud
from tests.e2e.conftest import SPEED, BuildRun, Cloud, cloud  # noqa: F401  (fixture)
from tests.support.cliprocess import read_until


@dataclass
class Cron:
    """One simulated cloud, a state directory and the CLI driven against them."""

    cloud: Cloud
    state_dir: Path

    @property
    def sim(self) -> SimCloud:
        return self.cloud.sim

    @property
    def store(self) -> StateStore:
        return StateStore(self.state_dir)

    def spec(self, example: str = "ws2022-standard.yaml", **changes: Any) -> Path:
        return self.cloud.spec(example, **changes)

    def cli(self, *argv: str) -> BuildRun:
        """`osbuild ARGV... --json` in this process; events from stdout."""
        self.cloud.capsys.readouterr()
        code = main([*argv, "--json"])
        out, err = self.cloud.capsys.readouterr()
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return BuildRun(code, events, err)

    def build(self, *specs: Path, extra: tuple[str, ...] = ()) -> BuildRun:
        return self.cloud.build(*specs, extra=("--state-dir", str(self.state_dir), *extra))

    def resume(self, build_id: str, *extra: str) -> BuildRun:
        return self.cli("resume", build_id, "--state-dir", str(self.state_dir),
                        *extra)

    def gc(self) -> int:
        self.cloud.capsys.readouterr()
        code = main(["gc", "--older-than", "0", "--os-cloud",
                     self.sim.cloud_name, "--state-dir", str(self.state_dir)])
        self.cloud.capsys.readouterr()
        return code

    def start(self, spec: Path, *extra: str) -> subprocess.Popen[str]:
        """`osbuild build` as a separate process (it can be SIGKILLed)."""
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(self.cloud.clouds_yaml)}
        return subprocess.Popen(
            [sys.executable, "-m", "osbuild", "build", str(spec), "--os-cloud",
             self.sim.cloud_name, "--log-dir",
             str(self.cloud.log_dir), "--state-dir", str(self.state_dir), "--json", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )

    def states(self) -> list[BuildState]:
        return self.store.list()

    def leftovers(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        return self.cloud.leftovers(keep)


@pytest.fixture
def cron(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cron]:
    # The e2e suite's `cloud` fixture (imported above): one simulated cloud per test.
    yield Cron(request.getfixturevalue("cloud"), tmp_path / "state")


__all__ = ["Cron", "read_until"]
