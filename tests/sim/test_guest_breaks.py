"""The simulated guest's breaks and hangs (issue 13 items 1-3) and its reading of the stage table.

Pending reboots: the signals sysprep checks are the ones BIS-F's sealing and windows-guest.md
list (WU agent, WindowsUpdate RebootRequired, CBS RebootPending, PendingFileRenameOperations);
sysprep's refusal is the `Sysprep_Clean_Validate_Opk` error reported from real builds. Sysprep's
result: `/quit`, then `ImageState` (IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE when generalized, as
Azure's generalize scripts check) and `System32\\Sysprep\\Panther\\setuperr.log`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from osbuild import markers
from osbuild.markers import Status
from osbuild.media import stages
from osbuild_sim.guest import GuestScenario, PowerOff

from .test_guest import disk_writes, found, load_example, machine_for, play, progress, render


def _play(tmp_path: Path, example: str = "ws2022-standard.yaml", **scenario: object):
    spec = load_example(tmp_path, example)
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()),
                  scenario=GuestScenario(**scenario))  # type: ignore[arg-type]
    return rendered, events


def _from(seen: list[str], first: str) -> list[str]:
    """What was seen from `first` on (the power-off protocol may add sysprep:ok at the end)."""
    return seen[seen.index(first):]


def _details(events, stage: str) -> list[str]:
    return [m.detail for m in found(events) if m.stage == stage and m.status is Status.INFO]


# --------------------------------------------------------------------------- pending reboot


def test_a_pending_reboot_is_settled_before_cleanup(tmp_path: Path) -> None:
    _rendered, events = _play(tmp_path, pending_reboot_after="updates")
    assert isinstance(events[-1].action, PowerOff)
    # then image hygiene and its own pagefile reboot, which is not a settling reboot
    assert _details(events, "cleanup") == [
        "reboot pending (CBS RebootPending): restarting 1/3", "resumed after reboot",
        "component cleanup exited 0", "resumed after reboot"]
    assert _from(progress(events), "cleanup:start")[:3] == [
        "cleanup:start", "cleanup:ok", "sysprep:start"]
    record = disk_writes(events)[-1]
    assert record["sysprep"] is True and record["settle_reboots"] == 1


def test_a_reboot_pending_when_no_update_is_offered_restarts_and_searches_again(
        tmp_path: Path) -> None:
    # cloudbase's imaging tools do the same: nothing to install but a reboot pending.
    # Two restarts to clear: the first update pass's own reboot leaves it pending.
    rendered, events = _play(tmp_path, pending_reboot_after="cloudbaseinit",
                             pending_reboot_sticks=2)
    assert isinstance(events[-1].action, PowerOff)
    cap = rendered.plan.updates.max_passes
    details = _details(events, "updates")
    assert re.fullmatch(rf"pass 1/{cap}: \d+ updates, result code 2", details[0])
    assert details[1:] == [
        "resumed after reboot",
        f"pass 2/{cap}: no updates offered, reboot pending (CBS RebootPending): "
        "restarting to search again",
        "resumed after reboot", f"pass 3/{cap}: no updates left"]
    # the restart cleared it: nothing left to settle before cleanup
    assert not any(d.startswith("reboot pending") for d in _details(events, "cleanup"))
    assert disk_writes(events)[-1].get("settle_reboots", 0) == 0


def test_a_pending_reboot_without_updates_is_settled_too(tmp_path: Path) -> None:
    # Updates off: the guest tools (virtio) leave a file rename for the next boot.
    spec = load_example(tmp_path, "ws2022-standard.yaml",
                        lambda text: text.replace("enabled: true", "enabled: false"))
    rendered = render(spec, tmp_path / "out")
    assert "updates" not in rendered.plan.stages
    events = play(machine_for(spec, rendered.iso_path.read_bytes()), scenario=GuestScenario(
        pending_reboot_after="virtio", pending_reboot_signal="PendingFileRenameOperations"))
    assert isinstance(events[-1].action, PowerOff)
    assert "reboot pending (PendingFileRenameOperations): restarting 1/3" in _details(
        events, "cleanup")


def test_a_reboot_that_never_clears_fails_at_the_cap(tmp_path: Path) -> None:
    rendered, events = _play(tmp_path, pending_reboot_after="updates", pending_reboot_sticks=99)
    cap = rendered.plan.settle_reboots
    assert cap == stages.MAX_SETTLE_REBOOTS
    last = found(events)[-1]
    assert (last.stage, last.status) == ("cleanup", Status.FAIL)
    assert last.detail == f"a reboot is still pending after {cap} reboots: CBS RebootPending"
    assert len([d for d in _details(events, "cleanup") if d.startswith("reboot pending")]) == cap
    assert not any(isinstance(e.action, PowerOff) for e in events)


def test_sysprep_refuses_a_pending_reboot_nobody_settled(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The same guest with a driver that does not settle: sysprep itself fails, quoting
    # setuperr.log. This is what the settling reboot saves a build from.
    table = tuple(dataclasses.replace(s, settle_reboots=False) for s in stages.GUEST_STAGES)
    monkeypatch.setattr(stages, "GUEST_STAGES", table)
    _rendered, events = _play(tmp_path, pending_reboot_after="cleanup")
    last = found(events)[-1]
    assert (last.stage, last.status) == ("sysprep", Status.FAIL)
    assert last.detail.startswith("sysprep exited 0, image state IMAGE_STATE_COMPLETE: "
                                  "SYSPRP Sysprep_Clean_Validate_Opk: There are one or more "
                                  "Windows updates that require a reboot.")
    assert not any(isinstance(e.action, PowerOff) for e in events)
    assert disk_writes(events)[-1]["sysprep"] is False


# --------------------------------------------------------------------------- Windows Update


def test_a_transient_update_error_is_retried_with_back_off(tmp_path: Path) -> None:
    rendered, events = _play(tmp_path, update_errors=2)
    assert isinstance(events[-1].action, PowerOff)
    retries = [d for d in _details(events, "updates") if "failed" in d]
    attempts, delay = rendered.plan.updates.attempts, rendered.plan.updates.retry_delay
    assert retries == [
        f'Windows Update search failed (Exception calling "Search" with "1" argument(s): '
        f'"Exception from HRESULT: 0x8024402C"): retry 2/{attempts} in {delay}s',
        f'Windows Update search failed (Exception calling "Search" with "1" argument(s): '
        f'"Exception from HRESULT: 0x8024402C"): retry 3/{attempts} in {2 * delay}s',
    ]
    assert "updates:fail" not in progress(events)


def test_update_errors_that_outlast_the_attempts_fail_the_stage(tmp_path: Path) -> None:
    rendered, events = _play(tmp_path, update_errors=99)
    attempts = rendered.plan.updates.attempts
    last = found(events)[-1]
    assert (last.stage, last.status) == ("updates", Status.FAIL)
    assert last.detail.startswith(f"Windows Update search failed {attempts} times: ")
    assert "0x8024402C" in last.detail
    assert len([d for d in _details(events, "updates") if "retry" in d]) == attempts - 1


# --------------------------------------------------------------------------- sysprep


def test_a_sysprep_failure_is_reported_with_setuperr_lines(tmp_path: Path) -> None:
    errors = (
        "SYSPRP Package Microsoft.BingWeather_4.53.0.0_x64__8wekyb3d8bbwe was installed for "
        "a user, but not provisioned for all users.",
        "SYSPRP Failed to remove apps for the current user: 0x80073cf2.",
        "[0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing "
        "'SysprepGeneralizeValidate' from C:\\Windows\\System32\\AppxSysprep.dll",
        "SYSPRP a fourth line that is not quoted",
    )
    _rendered, events = _play(tmp_path, sysprep_errors=errors)
    last = found(events)[-1]
    assert (last.stage, last.status) == ("sysprep", Status.FAIL)
    assert last.detail == ("sysprep exited 0, image state IMAGE_STATE_COMPLETE: "
                           + " | ".join(errors[:stages.SYSPREP_ERROR_LINES]))[:markers.DETAIL_MAX]
    assert "fourth" not in last.detail
    assert not any(isinstance(e.action, PowerOff) for e in events)


# --------------------------------------------------------------------------- the table


def test_a_stage_added_to_the_table_is_planned_rendered_and_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = stages.GuestStage("defrag", "oobeSystem", "build account",
                              "scripts/stage-scripts.ps1.j2", 600.0)
    table = list(stages.GUEST_STAGES)
    table.insert(table.index(stages.by_name("cleanup")), extra)  # type: ignore[arg-type]
    monkeypatch.setattr(stages, "GUEST_STAGES", tuple(table))
    rendered, events = _play(tmp_path)
    assert rendered.plan.stages[-3:] == ("defrag", "cleanup", "sysprep")
    assert (rendered.root / stages.script_file("defrag")).is_file()
    driver = (rendered.root / "osbuild/scripts/firstlogon.ps1").read_text(encoding="utf-8-sig")
    assert "'defrag' = 'stage-defrag.ps1'" in driver
    assert stages.watch_order(rendered.plan.stages)[:3] == ("winpe", "specialize", "firstlogon")
    assert _from(progress(events), "defrag:start")[:5] == [
        "defrag:start", "defrag:ok", "cleanup:start", "cleanup:ok", "sysprep:start"]
    assert isinstance(events[-1].action, PowerOff)
