"""osbuild builds against real Nova 34 and real Cinder 29 behind real Keystone and Glance.

The guest is the simulator's Windows model played by Nova's virt driver
(:mod:`tests.support.guestdriver`); everything else is the services' own code. Each build
runs as a normal project user; afterwards the admin finds nothing left in any project but
the published image.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.cloud import compute
from osbuild.unattended.state import StateStore
from osbuild_sim.guest import GuestScenario, disk_record_bytes
from tests.support.cliprocess import Event, interrupt_when
from tests.support.realbuilds import (
    BASELINE,
    assert_published,
    failed_report,
    finish,
    kill_during,
    published_build,
    resume,
    run_build,
    start_build,
    write_spec,
)
from tests.support.realservices import ProjectUser
from tests.support.realstack import REAL_CLOUD, REAL_TIME_SCALE, RealStack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("baseline")]


@pytest.mark.parametrize(
    ("verify", "from_volume"), [(False, False), (True, False), (True, True)],
    ids=["verify-off", "verify-on", "verify-on-from-volume"],
)
def test_volume_target_build_on_real_nova(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    tmp_path: Path, capsys: Any, verify: bool, from_volume: bool,
) -> None:
    spec = write_spec(tmp_path, "ws2022-standard.yaml",
                      verify={"enabled": verify, "boot_from_volume": from_volume})
    code, events, err, took = run_build(tmp_path, capsys, spec)
    with published_build(real_stack, user_conn, builder, code, events, err):
        kinds = {e.get("kind") for e in events if e["event"] == "resource.created"}
        assert "volume" in kinds and "server" in kinds
        # Real Glance took the family claim (a queued image: created, hidden, tagged,
        # stamped by the waits, listed by the contest), first created and last deleted.
        created = [e for e in events if e["event"] == "resource.created" and e["kind"] != "local"]
        deleted = [e for e in events if e["event"] == "resource.deleted" and e["kind"] != "local"]
        claim = f"osbuild-{events[0]['build_id']}-claim"
        assert (created[0]["name"], deleted[-1]["name"]) == (claim, claim)
        if verify:
            assert any(e["event"].startswith("verify") for e in events), [
                e["event"] for e in events]
    print(f"volume-target build (verify {'on' if verify else 'off'}"
          f"{' from a volume' if from_volume else ''}) took {took:.1f}s")


def test_local_target_build_on_real_nova(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    tmp_path: Path, capsys: Any,
) -> None:
    spec = write_spec(tmp_path, "ws2019-core-local.yaml")
    code, events, err, took = run_build(tmp_path, capsys, spec)
    with published_build(real_stack, user_conn, builder, code, events, err):
        pass
    print(f"local-target build took {took:.1f}s")


def test_a_failed_snapshot_shows_nowhere_a_project_reads_but_its_request_id(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, guests: Any,
) -> None:
    """What capture can say of a local target's failed createImage, read from real Nova 34:
    compute_snapshot_instance is a success once the snapshot task has started (nova/compute/
    manager.py snapshot_instance), the failure an instance fault that Nova shows only on an
    ERROR or DELETED server. The osbuild_sim model of it rests on this test."""
    guests.fail_snapshots("osbuild-t-snap")
    root = user_conn.image.create_image(
        name="osbuild-t-root", data=disk_record_bytes({"format": 1}), disk_format="raw",
        container_format="bare", allow_duplicates=True)
    flavor = user_conn.compute.find_flavor("m1.small", ignore_missing=False)  # a local root
    server = user_conn.compute.create_server(name="osbuild-t-snap", flavor_id=flavor.id,
                                             image_id=root.id, networks="none")
    try:
        deadline = time.monotonic() + 120
        while user_conn.compute.get_server(server.id).status not in ("ACTIVE", "SHUTOFF"):
            assert time.monotonic() < deadline, user_conn.compute.get_server(server.id).status
            time.sleep(0.5)
        snapshot = user_conn.compute.create_server_image(server, "osbuild-t-snapshot")
        user_conn.image.wait_for_delete(snapshot, wait=120, interval=0.5)  # @delete_image_on_error
        admin = real_stack.connect()
        for who in (user_conn, admin):
            seen = compute.last_action(who, server.id, "createImage")
            assert seen is not None
            assert seen.request_id.startswith("req-")
            assert (seen.failed_events, seen.details) == ((), "")
            assert who.compute.get_server(server.id).fault is None
        assert seen.why_failed(server.id) == (
            "Nova gives the project no reason; the cloud's admins find it in nova-compute's "
            f"log under Nova's createImage (request {seen.request_id})")
    finally:
        user_conn.compute.delete_server(server.id, ignore_missing=True)
        user_conn.compute.wait_for_delete(server, wait=120, interval=0.5)
        user_conn.image.delete_image(root, ignore_missing=True)
        finish(real_stack, user_conn, builder, None)


def test_uefi_secure_boot_virtio_scsi_example_on_real_nova(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    tmp_path: Path, capsys: Any,
) -> None:
    # Secure Boot needs the compute's COMPUTE_SECURITY_UEFI_SECURE_BOOT trait to schedule.
    spec = write_spec(tmp_path, "ws2025-datacenter-uefi.yaml")
    code, events, err, took = run_build(tmp_path, capsys, spec)
    with published_build(real_stack, user_conn, builder, code, events, err) as published:
        raw = dict(user_conn.image.get(f"/images/{published}").json())
        assert raw["hw_firmware_type"] == "uefi"
        assert raw["os_secure_boot"] == "required"
        assert raw["hw_disk_bus"] == "scsi"
    print(f"UEFI + Secure Boot + virtio-scsi build took {took:.1f}s")


@pytest.mark.parametrize(
    ("scenario", "phrases"),
    [
        (GuestScenario(fail_stage="cloudbaseinit", fail_message="msiexec exited 1603"),
         ("cloudbaseinit", "msiexec exited 1603")),
        (GuestScenario(power_off_at_stage="cloudbaseinit"), ("powered off before sysprep",)),
    ],
    ids=["failure-marker", "power-off-before-sysprep"],
)
def test_guest_failure_on_real_nova_fails_cleanly(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    guests: Any, tmp_path: Path, capsys: Any, scenario: GuestScenario,
    phrases: tuple[str, ...],
) -> None:
    guests.set_guest_scenario("*-builder", scenario)
    spec = write_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    code, events, err, _ = run_build(tmp_path, capsys, spec)
    try:
        assert code == 1, (err[-4000:], json.dumps(events[-3:]))
        why = json.dumps(failed_report(events))
        for phrase in phrases:
            assert phrase in why, why
    finally:
        finish(real_stack, user_conn, builder, None)


def test_verify_failure_on_real_nova_keeps_the_image_unpromoted(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    guests: Any, tmp_path: Path, capsys: Any,
) -> None:
    # The verify server's cloudbase-init never sets the password.
    guests.set_guest_scenario("*-verify*", GuestScenario(no_password=True))
    spec = write_spec(tmp_path, "ws2022-standard.yaml")
    code, events, err, _ = run_build(tmp_path, capsys, spec)
    try:
        assert code == 1, (err[-4000:], json.dumps(events[-3:]))
        assert "verify" in json.dumps(failed_report(events))
    finally:
        finish(real_stack, user_conn, builder, None)


def test_real_nova_refuses_a_non_bootable_volume_at_boot_index_0(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any
) -> None:
    """The check the simulator once lacked: this is Nova's own code answering."""
    volume = user_conn.block_storage.create_volume(size=1, name="not-bootable")
    try:
        volume = user_conn.block_storage.wait_for_status(volume, "available", wait=60)
        assert volume.is_bootable is False
        net = user_conn.network.find_network("private", ignore_missing=False)
        with pytest.raises(Exception, match=f"Block Device {volume.id} is not bootable"):
            user_conn.compute.create_server(
                name="bfv-not-bootable", flavor_id=user_conn.compute.find_flavor("m1.small").id,
                networks=[{"uuid": net.id}],
                block_device_mapping=[{"boot_index": 0, "uuid": volume.id,
                                       "source_type": "volume", "destination_type": "volume"}])
    finally:
        user_conn.block_storage.delete_volume(volume)
        user_conn.block_storage.wait_for_delete(volume, wait=60)
    finish(real_stack, user_conn, builder, None)


ADMIN_ONLY_SERVER_FIELDS = (
    "OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname",
    "OS-EXT-SRV-ATTR:instance_name", "OS-EXT-SRV-ATTR:reservation_id",
    "OS-EXT-SRV-ATTR:launch_index", "OS-EXT-SRV-ATTR:kernel_id", "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:root_device_name", "OS-EXT-SRV-ATTR:user_data", "host_status",
)


def test_a_member_sees_no_admin_only_server_fields(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any
) -> None:
    """What the simulator learnt (tests/sim/test_compute.py): the extended server
    attributes and host_status are for admins; the hostname for everyone from 2.90."""
    net = user_conn.network.find_network("private", ignore_missing=False)
    server = user_conn.compute.create_server(
        name="fields", flavor_id=user_conn.compute.find_flavor("m1.small").id,
        image_id=real_stack.media["virtio-win.iso"], networks=[{"uuid": net.id}])
    try:
        server = user_conn.compute.wait_for_server(server, wait=120)
        for version in ("2.1", "2.16", "2.89", "2.90", "2.100"):
            body = user_conn.compute.get(f"/servers/{server.id}",
                                         microversion=version).json()["server"]
            listed = user_conn.compute.get("/servers/detail",
                                           microversion=version).json()["servers"]
            print(f"\nserver keys at {version}: {sorted(body)}")
            for shown in (body, *listed):
                for admin_only in ADMIN_ONLY_SERVER_FIELDS:
                    assert admin_only not in shown
                assert ("OS-EXT-SRV-ATTR:hostname" in shown) == (version in ("2.90", "2.100"))
        admin = real_stack.connect().compute.get(f"/servers/{server.id}",
                                                 microversion="2.100").json()["server"]
        assert set(ADMIN_ONLY_SERVER_FIELDS) <= set(admin)
    finally:
        user_conn.compute.delete_server(server)
        user_conn.compute.wait_for_delete(server, wait=120)
    finish(real_stack, user_conn, builder, None)


def installing(event: Event) -> bool:
    return event["event"] == "stage" and event.get("stage") == "winpe"


def capturing(event: Event) -> bool:
    # The step's start, not the image's creation: real Cinder uploads the sparse target in
    # about a second, and a signal after the last cancellable wait lets the build finish.
    return event["event"] == "step.started" and event.get("step") == "capture"


@pytest.mark.parametrize(
    ("signum", "point"),
    [(signal.SIGINT, installing), (signal.SIGTERM, installing), (signal.SIGINT, capturing)],
    ids=["SIGINT-install", "SIGTERM-install", "SIGINT-capture"],
)
def test_signal_on_real_nova_cleans_up_and_exits_130(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    guests: Any, tmp_path: Path, signum: int, point: Any,
) -> None:
    if point is installing:
        guests.set_speed(20.0)  # a slow guest: still installing when the signal comes
    spec = write_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    signalled: list[tuple[int, float]] = []  # events read, and the time, at the signal

    def still_building(seen: list[Event]) -> None:
        assert real_stack.leftovers(users=[builder], baseline=BASELINE)
        signalled.append((len(seen), time.time()))

    proc = start_build(spec, clouds_yaml, tmp_path)
    events, err = interrupt_when(proc, point, signum, timeout=180, exit_timeout=300,
                                 before_signal=still_building)
    [(read, sent_at)] = signalled
    after = [(e["event"], e.get("step"), e["time"]) for e in events[read:]]
    assert proc.returncode == 130, (err[-2000:], time.strftime("%H:%M:%S", time.gmtime(sent_at)),
                                    f"{sent_at % 60:.3f}", after)
    assert signal.Signals(signum).name in failed_report(events)["reason"]
    finish(real_stack, user_conn, builder, None)


def test_sigkill_then_resume_on_real_nova_finishes_the_build(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    guests: Any, tmp_path: Path, capsys: Any,
) -> None:
    guests.set_speed(100.0)
    spec = write_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    build_id = kill_during(spec, clouds_yaml, tmp_path, installing)
    assert real_stack.leftovers(users=[builder], baseline=BASELINE)
    code, events, err = resume(build_id, tmp_path, capsys)
    with published_build(real_stack, user_conn, builder, code, events, err):
        pass


def test_resume_after_the_builder_finished_unwatched_reads_its_sysprep_ok_on_real_nova(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    guests: Any, tmp_path: Path, capsys: Any,
) -> None:
    # Killed in WinPE, long before sysprep:start; the guest finishes alone and powers off,
    # and its console goes with it (404, libvirt's pty console). What the guest posted to
    # the metadata service comes back through Nova's os-server-password API.
    guests.set_speed(100.0)
    spec = write_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    build_id = kill_during(spec, clouds_yaml, tmp_path, installing)
    server_id = StateStore(tmp_path / "state").load(build_id).resources["server:builder"]
    server = user_conn.compute.wait_for_server(user_conn.compute.get_server(server_id),
                                               status="SHUTOFF", interval=1, wait=600)
    console = user_conn.compute.post(f"/servers/{server.id}/action",
                                     json={"os-getConsoleOutput": {}}, raise_exc=False)
    assert console.status_code == 404, console.text
    code, events, err = resume(build_id, tmp_path, capsys)
    acked = [e for e in events if e["event"] == "stage" and e.get("stage") == "sysprep"]
    assert [e["status"] for e in acked] == ["ok"], (acked, err[-2000:])
    assert "os-server-password" in acked[0]["detail"]
    with published_build(real_stack, user_conn, builder, code, events, err):
        pass


def test_sigkill_then_gc_on_real_nova_removes_everything(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    guests: Any, tmp_path: Path, capsys: Any,
) -> None:
    guests.set_speed(20.0)
    spec = write_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    kill_during(spec, clouds_yaml, tmp_path, installing)
    assert real_stack.leftovers(users=[builder], baseline=BASELINE)
    capsys.readouterr()
    code = main(["gc", "--older-than", "0", "--time-scale", str(REAL_TIME_SCALE),
                 "--os-cloud", REAL_CLOUD, "--state-dir", str(tmp_path / "state")])
    _, err = capsys.readouterr()
    assert code == 0, err[-4000:]
    finish(real_stack, user_conn, builder, None)


def test_media_prepare_uefi_in_glance_then_uefi_build_on_real_nova(
    real_stack: RealStack, builder: ProjectUser, user_conn: Any, clouds_yaml: Path,
    tmp_path: Path, capsys: Any,
) -> None:
    (tmp_path / "uefi").mkdir()
    capsys.readouterr()
    code = main(["media", "prepare-uefi", "--image", "windows-server-2025-x64.iso",
                 "--os-cloud", REAL_CLOUD, "--name", "ws2025-prepared.iso",
                 "--work-dir", str(tmp_path / "uefi")])
    out, err = capsys.readouterr()
    prepared = user_conn.image.find_image("ws2025-prepared.iso")
    published = None
    try:
        assert code == 0, (out[-2000:], err[-2000:])
        assert prepared is not None and prepared.status == "active"
        spec = write_spec(tmp_path, "ws2025-datacenter-uefi.yaml",
                          windows={"iso_image": "ws2025-prepared.iso"}, verify={"enabled": False})
        code, events, err, _ = run_build(tmp_path, capsys, spec)
        assert code == 0, (err[-4000:], json.dumps(events[-3:]))
        published = assert_published(user_conn, events)
    finally:
        if prepared is not None:
            user_conn.image.delete_image(prepared, ignore_missing=True)
        finish(real_stack, user_conn, builder, published)
