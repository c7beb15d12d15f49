"""The pace of cloud time is a property of the session: clouds.yaml says it, the clock follows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from osbuild.cloud.clock import PACE_KEY, Clock, session_clock
from osbuild.cloud.connect import connect
from osbuild.errors import AuthError
from osbuild_sim import SimCloud


def _clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **entry: object) -> None:
    path = tmp_path / "clouds.yaml"
    auth = {"auth_url": "http://127.0.0.1:9/identity/v3", "username": "u", "password": "p",
            "project_name": "p", "user_domain_id": "default", "project_domain_id": "default"}
    path.write_text(yaml.safe_dump({"clouds": {"c": {"auth": auth, **entry}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))


def test_a_cloud_without_a_pace_runs_at_real_time(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _clouds_yaml(tmp_path, monkeypatch)
    assert session_clock(connect("c")).scale == 1.0
    assert session_clock(object()).scale == 1.0


def test_the_clouds_yaml_entry_sets_the_pace_and_the_command_line_overrides_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clouds_yaml(tmp_path, monkeypatch, **{PACE_KEY: 600})
    assert session_clock(connect("c")).scale == 600.0
    assert session_clock(connect("c", **{PACE_KEY: 60.0})).scale == 60.0


@pytest.mark.parametrize("value", [0, -5, "fast"])
def test_a_pace_that_is_not_a_positive_number_is_a_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: object) -> None:
    _clouds_yaml(tmp_path, monkeypatch, **{PACE_KEY: value})
    with pytest.raises(AuthError, match=f"{PACE_KEY}: must be a positive number"):
        connect("c")


def test_the_simulated_cloud_tells_its_pace(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with SimCloud(speed=6000.0) as sim:
        path = sim.write_clouds_yaml(tmp_path / "clouds.yaml")
        entry = yaml.safe_load(path.read_text())["clouds"][sim.cloud_name]
        assert entry[PACE_KEY] == 6000.0
        assert session_clock(sim.connect()).scale == 6000.0
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        assert session_clock(connect(sim.cloud_name)).scale == 6000.0


def test_cloud_seconds_pass_faster_at_a_faster_pace() -> None:
    assert Clock(600.0).now() == pytest.approx(Clock(1.0).now() * 600.0, rel=1e-3)


def test_since_counts_a_wall_clock_moment_in_cloud_seconds() -> None:
    from datetime import UTC, datetime, timedelta

    from osbuild.cloud.clock import Clock

    ten_ago = datetime.now(UTC) - timedelta(seconds=10)
    assert 6000 <= Clock(600.0).since(ten_ago) < 6600
    assert 10 <= Clock().since(ten_ago.replace(tzinfo=None)) < 11  # a naive time is UTC
    assert Clock().since(datetime.now(UTC) + timedelta(hours=1)) == 0.0  # never negative
