"""What an operator reads without --json: each message names the family once."""

from __future__ import annotations

import pytest

from osbuild.cli import main
from osbuild.unattended.lock import LocalLock
from osbuild.unattended.state import StateStore
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _build_text(cloud: Cloud, *args: str) -> tuple[int, str, str]:
    cloud.capsys.readouterr()
    code = main(["build", *args, "--os-cloud", cloud.sim.cloud_name,
                 "--log-dir", str(cloud.log_dir),
                 "--state-dir", str(cloud.workdir / "state")])
    out, err = cloud.capsys.readouterr()
    return code, out, err


def test_a_preflight_failure_names_the_family_once(cloud: Cloud) -> None:
    spec = cloud.spec(windows={"iso_image": "no-such.iso"}, builder={"flavor": "m1.nope"})
    code, _out, err = _build_text(cloud, str(spec))
    assert code == 2
    [summary] = [line for line in err.splitlines() if " failed: " in line
                 and not line.startswith("[")]
    assert summary.startswith("ws2022-standard in osbuild-sim: build ")
    assert summary.endswith(" failed: windows.iso_image: no image 'no-such.iso' in Glance")
    assert summary.count("ws2022-standard") == 1
    assert "  builder.flavor: no flavor 'm1.nope'" in err.splitlines()


def test_a_skip_names_the_family_and_cloud_once(cloud: Cloud) -> None:
    spec = cloud.spec()
    locks = StateStore(cloud.workdir / "state").locks_dir
    holder = LocalLock(locks, cloud.sim.cloud_name, "ws2022-standard")
    holder.acquire(build_id="20261126t000000-aaaaaa")
    try:
        code, out, _err = _build_text(cloud, str(spec))
    finally:
        holder.release()
    assert code == 0
    [line] = out.splitlines()
    assert line.startswith("ws2022-standard in osbuild-sim: skipped: already being built by pid")
    assert line.count("ws2022-standard") == 1 and line.count("osbuild-sim") == 1
