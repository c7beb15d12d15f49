"""`osbuild build` against a simulated guest that breaks the way real Windows does (issue 13, 1-3).

The guest behaviours are the simulator's (tests/sim/test_guest_breaks.py says where each was
seen); here the orchestrator's reaction is checked through the real CLI: a pending reboot is
settled and the build succeeds, a transient Windows Update error is retried, and a sysprep
failure ends the build at once with setuperr.log's lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuild.media import stages
from tests.e2e.conftest import Cloud

pytestmark = pytest.mark.slow


def _infos(run, stage: str) -> list[str]:
    return [e["detail"] for e in run.named("stage")
            if e["stage"] == stage and e["status"] == "info"]


def _report(run) -> dict:
    return json.loads(Path(run.success["report"]).read_text())


def test_a_pending_reboot_is_settled_and_the_build_succeeds(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"pending_reboot_after": "updates"}, name="builder$")
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    reboot = "reboot pending (CBS RebootPending): restarting 1/3"
    # then image hygiene and the pagefile's reboot (not a settling one)
    assert _infos(run, "cleanup") == [reboot, "resumed after reboot",
                                      "component cleanup exited 0", "resumed after reboot"]
    cleanup = next(s for s in _report(run)["stages"] if s["stage"] == "cleanup")
    assert cleanup["status"] == "ok" and reboot in cleanup["info"]
    assert cloud.leftovers(keep={run.success["image_id"]}) == []


def test_a_reboot_that_stays_pending_fails_the_build_clearly(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario(
        {"pending_reboot_after": "updates", "pending_reboot_sticks": 99}, name="builder$")
    run = cloud.build(cloud.spec())
    assert run.exit_code == 1, run.why
    assert "a reboot is still pending after 3 reboots: CBS RebootPending" in run.why
    assert run.failure["stage"] == "cleanup"
    assert cloud.leftovers() == []


def test_a_transient_windows_update_error_is_retried(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"update_errors": 2}, name="builder$")
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    retries = [d for d in _infos(run, "updates") if "failed" in d]
    assert len(retries) == 2 and all("0x8024402C" in d for d in retries)
    assert retries[0].endswith("retry 2/5 in 60s") and retries[1].endswith("retry 3/5 in 120s")


def test_a_windows_update_error_that_persists_fails_with_its_reason(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"update_errors": 99}, name="builder$")
    run = cloud.build(cloud.spec())
    assert run.exit_code == 1, run.why
    assert "Windows Update search failed 5 times" in run.why
    assert "0x8024402C" in run.why
    assert run.failure["stage"] == "updates"
    assert cloud.leftovers() == []


def test_a_sysprep_failure_ends_the_build_at_once_with_setuperr_lines(cloud: Cloud) -> None:
    errors = [
        "SYSPRP Package Microsoft.BingWeather_4.53.0.0_x64__8wekyb3d8bbwe was installed for "
        "a user, but not provisioned for all users.",
        "SYSPRP Failed to remove apps for the current user: 0x80073cf2.",
    ]
    cloud.sim.faults.add_guest_scenario({"sysprep_errors": errors}, name="builder$")
    spec = cloud.spec(builder={"stage_timeouts": {"sysprep": "2h"}})
    run = cloud.build(spec)
    assert run.exit_code == 1, run.why
    assert run.failure["stage"] == "sysprep"
    for line in errors:
        assert line in run.why
    assert "image state IMAGE_STATE_COMPLETE" in run.why
    assert "no progress" not in run.why  # seen at once, not a timeout
    assert cloud.leftovers() == []
    # The watcher ended sysprep within minutes (cloud time) of its start, not after its 2h.
    report = json.loads(Path(run.failure["report"]).read_text())
    sysprep = report["stages"][-1]
    assert sysprep["stage"] == "sysprep" and sysprep["status"] == "failed"
    assert errors[0] in sysprep["detail"]
    assert sysprep["finished"] - sysprep["started"] < 30 * 60


def test_a_stage_added_to_the_table_runs_end_to_end(cloud: Cloud,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Adding a stage is the table entry, its template and the simulator's model of it; here
    # a generic model and an existing template stand in for the last two.
    extra = stages.GuestStage("defrag", "oobeSystem", "build account",
                              "scripts/stage-scripts.ps1.j2", 600.0)
    table = list(stages.GUEST_STAGES)
    table.insert([s.name for s in table].index("cleanup"), extra)
    monkeypatch.setattr(stages, "GUEST_STAGES", tuple(table))
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    started = [e["stage"] for e in run.named("stage") if e["status"] == "start"]
    assert started[-3:] == ["defrag", "cleanup", "sysprep"]
    assert [s["stage"] for s in _report(run)["stages"]][-3:] == ["defrag", "cleanup", "sysprep"]
