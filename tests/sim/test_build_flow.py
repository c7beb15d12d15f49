"""A rendered config ISO plays through the simulated APIs to SHUTOFF and a captured image."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from openstack import exceptions

from osbuild import markers
from osbuild.media.render import render_media
from osbuild.resources import examples_dir
from osbuild.spec import load_spec
from osbuild_sim import SimCloud
from osbuild_sim.console import CONSOLE_CAP
from osbuild_sim.guest import read_disk_record
from osbuild_sim.media import cloudbase_msi_standin
from tests.sim.conftest import run_until, server_status, volume_status

POLL = 20.0  # cloud seconds between the test's looks at the server
CDROM = {"source_type": "volume", "destination_type": "volume", "device_type": "cdrom",
         "disk_bus": "sata", "delete_on_termination": False}


def _boot_builder(sim: Any, conn: Any, tmp_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The ws2022 example's media on volumes and a builder booted from them."""
    shutil.copy(examples_dir() / "ws2022-standard.yaml", tmp_path / "spec.yaml")
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
    spec = load_spec(tmp_path / "spec.yaml")
    media = render_media(spec, tmp_path / "out", build_id="20261126t000000-abcdef")

    config = conn.image.create_image(
        name="osbuild-config", data=media.iso_path.read_bytes(), disk_format="iso",
        container_format="bare", allow_duplicates=True)
    assert conn.image.get_image(config.id).status == "active"
    volumes = {}
    for role, image_name in (("iso", "windows-server-2022-x64.iso"),
                             ("virtio", "virtio-win.iso"), ("config", None)):
        image_id = config.id if image_name is None else conn.image.find_image(image_name).id
        volumes[role] = conn.block_storage.create_volume(size=6, image_id=image_id, name=role)
    volumes["target"] = conn.block_storage.create_volume(size=40, name="target")
    run_until(sim, lambda: all(volume_status(conn, v.id) == "available"
                               for v in volumes.values()))
    hardware = {"os_type": "windows", "os_distro": "windows", "os_version": "2022",
                "hw_machine_type": "q35", "hw_firmware_type": "bios", "hw_cdrom_bus": "sata",
                "hw_disk_bus": "virtio"}
    conn.block_storage.set_volume_bootable_status(volumes["target"], True)
    conn.block_storage.set_volume_image_metadata(volumes["target"], **hardware)

    server = conn.compute.create_server(
        name="builder", flavor_id="2", networks="none",
        block_device_mapping=[
            {"boot_index": 0, "uuid": volumes["target"].id, "source_type": "volume",
             "destination_type": "volume", "device_type": "disk", "disk_bus": "virtio",
             "delete_on_termination": False},
            {**CDROM, "boot_index": 1, "uuid": volumes["iso"].id},
            {**CDROM, "boot_index": -1, "uuid": volumes["virtio"].id},
            {**CDROM, "boot_index": -1, "uuid": volumes["config"].id},
        ])
    return server, media, volumes


@pytest.mark.parametrize("work_pace", [1.0, 3.0])
def test_ws2022_volume_build_plays_to_shutoff_and_uploads(
    sim: Any, conn: Any, tmp_path: Path, work_pace: float
) -> None:
    # The tests run guests at work_pace 3: their work is faster, the power-off hold is not.
    sim.world.work_pace = work_pace
    server, media, volumes = _boot_builder(sim, conn, tmp_path)
    transcript = ""
    start_seen: float | None = None  # cloud time sysprep:start was first read
    console_gone: float | None = None  # cloud time the console answered 404 or SHUTOFF

    def poll() -> bool:
        nonlocal transcript, start_seen, console_gone
        if server_status(conn, server.id) == "SHUTOFF":
            console_gone = console_gone or sim.world.now()
            return True
        if server_status(conn, server.id) == "ACTIVE":
            # Powered off but not yet SHUTOFF: the pty console is already gone (404).
            try:
                transcript = conn.compute.get_server_console_output(server)["output"]
            except exceptions.NotFoundException:
                console_gone = console_gone or sim.world.now()
            if start_seen is None and any(
                    m == markers.Marker("sysprep", markers.Status.START)
                    for m in markers.parse_lines(transcript.splitlines(), media.nonce)):
                start_seen = sim.world.now()
        return False

    run_until(sim, poll, step=POLL, limit=6 * 3600)
    assert len(transcript.encode()) < CONSOLE_CAP  # nothing was cut: the transcript is whole
    found = markers.parse_lines(transcript.splitlines(), media.nonce)
    started = [m.stage for m in found if m.status == markers.Status.START]
    assert started == ["winpe", "specialize", "firstlogon", *media.plan.stages]
    assert not [m for m in found if m.status == markers.Status.FAIL]
    # Polled once a minute (the watcher's longest interval), sysprep:start is always seen
    # (the guest holds SYSPREP_HOLD after it); sysprep:ok just before power-off may be lost.
    # In between, this builder (no network) may say that it could not post sysprep:ok to the
    # metadata service: an info marker as close to the power-off as sysprep:ok.
    assert markers.Marker("sysprep", markers.Status.START) in [
        m for m in found if m.status != markers.Status.INFO][-2:]
    # ...and stays readable for the hold in the cloud's time, whatever the work pace.
    assert start_seen is not None and console_gone is not None
    assert console_gone - start_seen >= markers.SYSPREP_HOLD - POLL

    conn.compute.delete_server(server)
    run_until(sim, lambda: conn.compute.find_server(server.id) is None)
    run_until(sim, lambda: volume_status(conn, volumes["target"].id) == "available")
    image_id = conn.block_storage.upload_volume_to_image(
        volumes["target"], "ws2022-built", disk_format="raw")["image_id"]
    run_until(sim, lambda: conn.image.get_image(image_id).status == "active")
    image = conn.image.get_image(image_id)
    assert image.hw_machine_type == "q35" and image.os_type == "windows"
    record = read_disk_record(conn.image.download_image(image).content)
    assert record is not None and record["sysprep"] is True
    assert record["build_id"] == "20261126t000000-abcdef"


def test_a_reader_that_misses_the_whole_hold_still_reads_sysprep_start(tmp_path: Path) -> None:
    # At the tests' speeds the 180 s hold is a fraction of a wall second, which a loaded
    # machine's scheduler can take from the watcher in one go (a build once failed "powered
    # off before sysprep" at load average 4.4). A real cloud never starves the orchestrator
    # for minutes: while sysprep:start is unread, the simulated hold goes on for up to
    # SYSPREP_HOLD_WALL_FLOOR real seconds (900 cloud seconds at this speed).
    speed = 600.0
    with SimCloud(speed=speed, work_pace=3.0) as sim:
        conn = sim.connect()
        server, media, _ = _boot_builder(sim, conn, tmp_path)

        def on_console(stage: str) -> bool:
            try:
                output = conn.compute.get_server_console_output(server)["output"]
            except exceptions.ConflictException:
                return False  # not on a host yet
            except exceptions.NotFoundException:
                return False  # powered off: the pty console is gone
            found = markers.parse_lines(output.splitlines(), media.nonce)
            return markers.Marker(stage, markers.Status.START) in found

        run_until(sim, lambda: on_console("cleanup"), step=POLL, limit=6 * 3600)
        # The reader looks away for longer than cleanup, sysprep and the plain hold take
        # (at most about 320 + 180 cloud seconds at work pace 3)...
        sim.advance(600.0)
        # ...and its next look still finds the guest up and sysprep:start on its console.
        assert server_status(conn, server.id) == "ACTIVE"
        assert on_console("sysprep")
        # Read at last, the hold ends: the guest powers off at once, not at the hold's end.
        run_until(sim, lambda: server_status(conn, server.id) == "SHUTOFF", step=5.0,
                  limit=120.0)
