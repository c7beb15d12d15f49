"""A deadline that ends a build names the setting to raise, in every place an operator reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuild.cli import main
from tests.e2e.conftest import BuildRun, Cloud

# Seconds per test (builds in the simulated cloud): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _report(run: BuildRun) -> dict:
    return json.loads(Path(run.failure["report"]).read_text())


def test_a_stuck_capture_upload_names_its_timeout_stage_and_the_volume_left(
        cloud: Cloud) -> None:
    # Cinder leaves the target `uploading` (only an admin can reset it): the capture times
    # out and its volume cannot be deleted, exit 3. The one-line reason once said only
    # "could not delete: volume ...", with no stage: nothing told cron what had failed.
    cloud.sim.faults.add_scenario("upload_stuck", name="-target$")
    run = cloud.build(cloud.spec(builder={"stage_timeouts": {"capture": "10m"}}))
    assert run.exit_code == 3, run.why
    failure = run.failure
    assert failure["stage"] == "capture"
    assert failure["reason"].startswith("capture: target volume ")
    assert "still uploading after 10m (builder.stage_timeouts.capture)" in failure["reason"]
    assert "could not delete: volume " in failure["reason"]
    report = _report(run)
    assert report["failed_stage"] == "capture" and report["exit_code"] == 3
    assert "(builder.stage_timeouts.capture)" in report["error"][0]
    [left] = cloud.leftovers()
    assert left.startswith("volume osbuild-") and "-target " in left
    # `osbuild status` says so too: its leftovers column waits for gc's 6h, the reason not.
    cloud.capsys.readouterr()
    assert main(["status", "--json", "--os-cloud", cloud.sim.cloud_name]) == 0
    [family] = json.loads(cloud.capsys.readouterr().out)["families"]
    assert family["last_build"]["reason"] == failure["reason"]


def test_a_boot_test_that_never_finishes_names_verify_timeout(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"cloudbase_init_never_finishes": True},
                                        name="-verify$")
    run = cloud.build(cloud.spec(verify={"timeout": "5m"}))
    assert run.exit_code == 1, run.why
    assert run.failure["stage"] == "verify"
    assert run.failure["reason"] == (
        "verify: check cloudbase-init failed: the console did not show 'Plugins execution "
        "done' within 5m (verify.timeout; verify-console.log)")
    image_id = run.failure["kept"][0].split()[1]
    assert cloud.leftovers(keep={image_id}) == []
