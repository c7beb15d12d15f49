"""A deployed image booting as a refresh builder: cloudbase-init's user data runs the driver."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from osbuild.media import layout
from osbuild.media.render import REFRESH_STAGES, refresh_user_data, render_media
from osbuild.media.windows import SYSPREP_GENERALIZE_LIMIT
from osbuild_sim.guest import GuestEvent, Metadata, boot, disk_record_bytes
from osbuild_sim.hypervisor import AttachedDevice, Machine, build_machine
from tests.sim.test_guest import NONCE, disk_writes, found, lines, load_example, progress
from tests.sim.test_guest_deployed import record

BUILD_ID = "20261201t031500-f00f00"
BUILT = datetime(2026, 11, 1, tzinfo=UTC)


def _refresh_machine(tmp_path: Path, disk: dict[str, Any]) -> Machine:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    media = render_media(spec, tmp_path / "out", build_id=BUILD_ID, nonce=NONCE, refresh=True)
    devices = [AttachedDevice("disk", None, 0, "volume", "target", disk_record_bytes(disk), {}),
               AttachedDevice("cdrom", None, None, "volume", "config",
                              media.iso_path.read_bytes(), {})]
    return build_machine(devices, {"os_type": "windows"})


def _play(machine: Machine, *, user_data: bytes | None, started: datetime,
          config_drive: bool = False, network: bool = True) -> list[GuestEvent]:
    metadata = Metadata(user_data=user_data, config_drive=config_drive, network=network)
    return list(boot(machine, rng=random.Random(5), started_at=started, metadata=metadata))


def _installed(**changes: Any) -> dict[str, Any]:
    return record(**{"updated_at": BUILT.isoformat(), "generalize_count": 1,
                     "language": "en-US", **changes})


def test_refresh_media_has_no_answer_file_and_a_refresh_plan(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    media = render_media(spec, tmp_path / "out", build_id=BUILD_ID, nonce=NONCE, refresh=True)
    assert not (media.root / layout.ANSWER_FILE).exists()
    assert media.plan.kind == "refresh" and media.plan.stages == REFRESH_STAGES
    assert refresh_user_data().startswith("#ps1_sysnative\n")


def test_user_data_runs_the_refresh_stages_and_generalizes_again(tmp_path: Path) -> None:
    machine = _refresh_machine(tmp_path, _installed())
    events = _play(machine, user_data=refresh_user_data().encode(),
                   started=BUILT + timedelta(days=30))
    assert progress(events) == ["firstlogon:start", "firstlogon:ok", "updates:start",
                                "updates:ok", "cleanup:start", "cleanup:ok", "sysprep:start",
                                "sysprep:ok"]
    # A month after the image was patched: one pass brings the cumulative update.
    passes = [m.detail for m in found(events) if m.stage == "updates" and "result code" in
              m.detail]
    assert len(passes) == 1, passes
    written = disk_writes(events)[-1]
    assert written["generalize_count"] == 2 and written["refreshes"] == 1
    assert written["build_id"] == BUILD_ID and written["sysprep"] is True


def test_a_longer_gap_takes_a_second_pass(tmp_path: Path) -> None:
    machine = _refresh_machine(tmp_path, _installed())
    events = _play(machine, user_data=refresh_user_data().encode(),
                   started=BUILT + timedelta(days=90))
    passes = [m for m in found(events) if m.stage == "updates" and "result code" in m.detail]
    assert len(passes) == 2


def test_user_data_reaches_a_builder_without_network_only_on_a_config_drive(
        tmp_path: Path) -> None:
    user_data = refresh_user_data().encode()
    machine = _refresh_machine(tmp_path, _installed())
    offline = _play(machine, user_data=user_data, started=BUILT, network=False)
    assert found(offline) == []
    assert any("No available service found" in line for line in lines(offline))
    drive = _play(machine, user_data=user_data, started=BUILT, network=False,
                  config_drive=True)
    assert progress(drive)[-1] == "sysprep:ok"
    assert any("Metadata service loaded: 'ConfigDriveService'" in line
               for line in lines(drive))


def test_without_user_data_the_instance_just_deploys(tmp_path: Path) -> None:
    machine = _refresh_machine(tmp_path, _installed())
    events = _play(machine, user_data=None, started=BUILT)
    assert found(events) == []
    assert disk_writes(events) == []


def test_sysprep_refuses_past_the_generalize_limit(tmp_path: Path) -> None:
    # Seen in Microsoft's "Sysprep (Generalize) a Windows installation", "Limits on how many
    # times you can run Sysprep": 1001 on one image for Windows 8.1 and later; the message is
    # KB929828's ("A fatal error occurred while trying to Sysprep the machine").
    machine = _refresh_machine(tmp_path,
                                  _installed(generalize_count=SYSPREP_GENERALIZE_LIMIT))
    events = _play(machine, user_data=refresh_user_data().encode(),
                   started=BUILT + timedelta(days=30))
    assert progress(events)[-1] == "sysprep:fail"
    failure = found(events)[-1]
    assert "A fatal error occurred while trying to sysprep the machine" in failure.detail
