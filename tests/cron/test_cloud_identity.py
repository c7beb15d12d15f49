"""A cloud chosen by OS_CLOUD or plain OS_* variables keys locks, state, metrics, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from osbuild.unattended.lock import LocalLock, lock_path
from osbuild_sim.identity import REGION
from osbuild_sim.world import PROJECT_NAME
from tests.cron.conftest import Cron
from tests.e2e.conftest import BuildRun

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _build_without_os_cloud(cron: Cron, spec: Path, metrics: Path) -> BuildRun:
    return cron.cli("build", str(spec), "--state-dir", str(cron.state_dir), "--log-dir",
                    str(cron.cloud.log_dir), "--metrics-file", str(metrics))


@pytest.mark.parametrize("chosen_by", ["OS_CLOUD", "OS_* variables"])
def test_the_chosen_cloud_keys_lock_state_metrics_and_report(
        cron: Cron, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chosen_by: str) -> None:
    sim = cron.sim
    if chosen_by == "OS_CLOUD":
        clouds_yaml = tmp_path / "two-clouds.yaml"
        clouds_yaml.write_text(yaml.safe_dump({"clouds": {
            "east": sim.cloud_config(), "west": sim.cloud_config()}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
        monkeypatch.setenv("OS_CLOUD", "west")
        expected = "west"
    else:
        empty = tmp_path / "empty-clouds.yaml"
        empty.write_text("clouds: {}\n")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(empty))
        auth = sim.auth()
        for key in ("auth_url", "username", "password", "project_name", "user_domain_id",
                    "project_domain_id"):
            monkeypatch.setenv(f"OS_{key.upper()}", auth[key])
        monkeypatch.setenv("OS_REGION_NAME", REGION)
        monkeypatch.setenv("OS_INTERFACE", "public")
        # The cloud's pace, as openstacksdk reads any setting from OS_* variables.
        monkeypatch.setenv("OS_OSBUILD_TIME_SCALE", str(sim.clock.speed))
        expected = f"127.0.0.1:{sim.port}/identity/{PROJECT_NAME}@{REGION}"
    spec = cron.spec()
    metrics = tmp_path / "osbuild.prom"

    # The same family held in another cloud does not block this one.
    other = LocalLock(cron.store.locks_dir, "east" if chosen_by == "OS_CLOUD" else "default",
                      "ws2022-standard")
    other.acquire(build_id="20261126t000000-aaaaaa")
    try:
        run = _build_without_os_cloud(cron, spec, metrics)
    finally:
        other.release()
    assert run.exit_code == 0, run.why
    [state] = cron.states()
    assert state.cloud == expected
    assert run.named("build.started")[0]["cloud"] == expected
    report = json.loads(Path(run.success["report"]).read_text())
    assert report["cloud"] == expected
    assert f'cloud="{expected}"' in metrics.read_text()
    assert lock_path(cron.store.locks_dir, expected, "ws2022-standard").exists()
    assert auth_secret_absent(state.model_dump_json(), sim.password)

    # ...while the same family held in this cloud does.
    same = LocalLock(cron.store.locks_dir, expected, "ws2022-standard")
    same.acquire(build_id="20261126t000000-bbbbbb")
    try:
        again = _build_without_os_cloud(cron, spec, metrics)
    finally:
        same.release()
    assert again.exit_code == 0, again.why
    [skip] = again.named("build.skipped")
    assert "20261126t000000-bbbbbb" in skip["reason"]


def auth_secret_absent(text: str, password: str) -> bool:
    return password not in text
