"""A resumed build reports the whole build, from its first start, and says it was resumed.

The orchestrator is SIGKILLed mid-install; its state's start is then moved back, as if the
host had been down for hours before `osbuild resume` ran (the simulated cloud's clock runs
SPEED times faster than the wall's, so hours of cloud time are seconds of wall time).
"""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from osbuild.cli import main
from osbuild.unattended import metrics
from tests.cron.conftest import SPEED, Cron
from tests.support.cliprocess import interrupt_when

pytestmark = pytest.mark.slow

HOURS_DOWN = 2.0


def _killed_mid_install(cron: Cron, spec: Path) -> str:
    """The build's id: started, SIGKILLed once Windows Setup runs, then HOURS_DOWN earlier."""
    proc = cron.start(spec)
    events, _ = interrupt_when(
        proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe" and e["status"] == "start",
        signal.SIGKILL, exit_timeout=30)
    build_id = str(events[0]["build_id"])
    started = cron.store.load(build_id).started_at
    cron.store.update(build_id, started_at=started - timedelta(seconds=HOURS_DOWN * 3600 / SPEED))
    return build_id


def test_a_resumed_build_reports_its_whole_duration(cron: Cron, tmp_path: Path) -> None:
    build_id = _killed_mid_install(cron, cron.spec())
    first_start = cron.store.load(build_id).started_at
    prom = tmp_path / "osbuild.prom"
    run = cron.resume(build_id, "--metrics-file", str(prom))
    assert run.exit_code == 0, run.why
    done = run.success
    report = json.loads((cron.cloud.log_dir / build_id / "report.json").read_text())
    resumed = report["resumed"]
    # The whole build: the hours the host was down and the resumed run (was: that run only).
    assert resumed["duration_seconds"] < HOURS_DOWN * 3600
    assert report["duration_seconds"] >= HOURS_DOWN * 3600 + resumed["duration_seconds"]
    assert report["started"] == first_start.isoformat(timespec="seconds")
    assert resumed["at"] > report["started"]
    assert done["duration"] == report["duration_seconds"]
    assert done["resumed_duration"] == resumed["duration_seconds"]
    # The metric and the status trend use the whole figure too.
    samples = metrics.parse(prom.read_text())
    [duration] = [v for (name, _labels), v in samples.items()
                  if name == "osbuild_last_build_duration_seconds"]
    assert duration == report["duration_seconds"]
    cron.cloud.capsys.readouterr()
    assert main(["status", "--json", "--state-dir", str(cron.state_dir),
                 "--os-cloud", cron.sim.cloud_name]) == 0
    [row] = json.loads(cron.cloud.capsys.readouterr().out)["families"]
    assert row["durations_seconds"] == [report["duration_seconds"]]
    assert row["last_build"]["duration_seconds"] == report["duration_seconds"]
    # The page says it was resumed, and what the resumed run took.
    page = (cron.cloud.log_dir / build_id / "report.html").read_text()
    assert f"resumed at {resumed['at']} by osbuild resume, which took" in page


def test_builder_timeout_counts_from_the_first_start(cron: Cron) -> None:
    # The guest has been installing for longer than builder.timeout when resume looks at
    # it: the build is over its deadline (a resume used to grant a fresh builder.timeout).
    build_id = _killed_mid_install(cron, cron.spec(builder={"timeout": "90m"}))
    run = cron.resume(build_id)
    assert run.exit_code == 1, run.why
    assert "the build ran past builder.timeout (1h30m)" in run.failure["reason"]
    assert cron.leftovers() == []
