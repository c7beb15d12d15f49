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
    # "delete by hand" alone left a project member stuck: Cinder refuses the delete until
    # an admin resets the volume's status (an outside tryout, session 32).
    volume_id = failure["reason"].split("could not delete: volume ")[1].split()[0]
    assert failure["reason"].endswith(
        f"-target): stuck in uploading: an admin resets it first (openstack volume set "
        f"--state error {volume_id}), then it can be deleted"), failure["reason"]
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


def _updates_infos(run: BuildRun) -> list[str]:
    return [e["detail"] for e in run.named("stage")
            if e["stage"] == "updates" and e["status"] == "info"]


def test_a_guest_past_the_update_cap_is_stopped_at_once(cloud: Cloud) -> None:
    # A Windows Update loop the guest did not end: the build watched "pass 15/3" for the
    # 3h of stage_timeouts.updates, then called it "no progress" (outside tryout, s32).
    cloud.sim.faults.add_guest_scenario({"endless_updates": True}, name="builder$")
    run = cloud.build(cloud.spec(updates={"enabled": True, "max_passes": 2}))
    assert run.exit_code == 1, run.why
    assert run.failure["stage"] == "updates"
    assert run.failure["reason"].startswith(
        "updates: the guest went past updates.max_passes (2): pass 3/2: "), run.failure
    passes = [d for d in _updates_infos(run) if d.startswith("pass ")]
    assert [p.split(":")[0] for p in passes] == ["pass 1/2", "pass 2/2", "pass 3/2"]
    # The install step ends in the stream as it ended: failed, with the reason.
    [ended] = run.named("step.failed")
    assert (ended["step"], ended["status"]) == ("install", "failed")
    assert ended["reason"] == run.failure["reason"]
    assert cloud.leftovers() == []


def test_a_stage_that_kept_reporting_is_not_called_stalled(cloud: Cloud) -> None:
    # Past its deadline while still making update passes: not "no progress".
    cloud.sim.faults.add_guest_scenario({"endless_updates": True}, name="builder$")
    run = cloud.build(cloud.spec(updates={"enabled": True, "max_passes": 20},
                                 builder={"stage_timeouts": {"updates": "30m"}}))
    assert run.exit_code == 1, run.why
    reason = run.failure["reason"]
    last = _updates_infos(run)[-1]
    assert reason.startswith("updates: stage updates did not finish within 30m "
                             "(builder.stage_timeouts.updates); its last marker: "
                             f"{last}"), (reason, last)
    assert "no progress" not in reason
    assert cloud.leftovers() == []
