"""Real Cinder 29 with the file-backed driver, behind real Keystone and Glance.

Each test runs as a normal project user (role ``member``) with openstacksdk; afterwards
the admin checks across all projects that the test's project holds no volume, snapshot
or attachment and that no backing file is left.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openstack import exceptions as sdk_exc

from osbuild.media.configiso import build_iso
from tests.support.realcinder import RealCinder
from tests.support.realservices import ProjectUser, RealServices

WAIT = 120
# What Nova's fake virt driver sends (nova.virt.fake.FakeDriver.get_volume_connector).
NOVA_FAKE_CONNECTOR = {"ip": "127.0.0.1", "initiator": "fake", "host": "fake-mini"}


@pytest.fixture
def project(
    request: pytest.FixtureRequest, real_services: RealServices, real_cinder: RealCinder
) -> Iterator[ProjectUser]:
    name = request.node.name[:40]
    suffix = uuid.uuid4().hex[:6]
    who = real_services.create_project_user(f"{name}-{suffix}", f"u-{name}-{suffix}")
    yield who
    _assert_no_leftovers(real_services, real_cinder, who.project_id)


def _assert_no_leftovers(rs: RealServices, cinder: RealCinder, project_id: str) -> None:
    admin = rs.connect()
    volumes = [
        v for v in admin.block_storage.volumes(all_projects=True) if v.project_id == project_id
    ]
    snapshots = [
        s for s in admin.block_storage.snapshots(all_projects=True) if s.project_id == project_id
    ]
    assert not volumes, [(v.id, v.name, v.status) for v in volumes]
    assert not snapshots, [(s.id, s.status) for s in snapshots]
    files = sorted(p.name for p in cinder.volumes_dir.iterdir())
    assert not files, f"backing files left in {cinder.volumes_dir}: {files}"


def _connect(rs: RealServices, who: ProjectUser) -> Any:
    return rs.connect(who.auth(rs.auth_url))


def _iso(tmp_path: Path, text: bytes = b"osbuild config\n") -> bytes:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "autounattend.xml").write_bytes(text)
    (tree / "setup.ps1").write_bytes(b"Write-Host hello\r\n" * 100)
    iso_path = tmp_path / "config.iso"
    build_iso(tree, iso_path, epoch=0)
    return iso_path.read_bytes()


def _available(conn: Any, volume: Any) -> Any:
    # Fetch first: wait_for_status returns at once when the object it is given already
    # says "available", however old that object is.
    return conn.block_storage.wait_for_status(
        conn.block_storage.get_volume(volume.id),
        "available",
        failures=["error"],
        interval=0.5,
        wait=WAIT,
    )


def _delete(conn: Any, volume: Any) -> None:
    conn.block_storage.delete_volume(volume)
    conn.block_storage.wait_for_delete(volume, interval=0.5, wait=WAIT)


def test_catalog_has_block_storage_for_sdk_and_nova(
    real_services: RealServices, real_cinder: RealCinder
) -> None:
    conn = real_services.connect()
    assert conn.block_storage.get_endpoint().rstrip("/") == real_cinder.url
    # Nova's [cinder] catalog_info default is "volumev3::publicURL".
    url = conn.session.get_endpoint(service_type="volumev3", interface="public")
    assert url.rstrip("/") == real_cinder.url


def test_volume_from_iso_image_has_its_bytes(
    real_services: RealServices,
    real_cinder: RealCinder,
    project: ProjectUser,
    tmp_path: Path,
) -> None:
    conn = _connect(real_services, project)
    data = _iso(tmp_path)
    image = conn.image.create_image(
        name="config-iso",
        data=data,
        disk_format="iso",
        container_format="bare",
        allow_duplicates=True,
    )
    image = conn.image.wait_for_status(image, "active", failures=["killed"], wait=WAIT)
    volume = conn.block_storage.create_volume(size=1, image_id=image.id, name="iso")
    try:
        volume = _available(conn, volume)
        assert volume.is_bootable is True
        assert volume.volume_image_metadata["image_id"] == image.id
        assert volume.volume_image_metadata["disk_format"] == "iso"
        path = real_cinder.volume_path(volume.id)
        with path.open("rb") as fh:
            assert fh.read(len(data)) == data
            assert fh.read(64 * 1024) == bytes(64 * 1024)
        assert path.stat().st_size == 1024**3
        # Sparse: far less than a GiB on disk.
        assert path.stat().st_blocks * 512 < 64 * 1024**2
    finally:
        _delete(conn, volume)
        conn.image.delete_image(image)
    assert not real_cinder.volume_path(volume.id).exists()


def test_blank_volume_is_not_bootable_until_set(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser
) -> None:
    conn = _connect(real_services, project)
    volume = _available(conn, conn.block_storage.create_volume(size=2, name="target"))
    try:
        assert volume.is_bootable is False
        assert not volume.volume_image_metadata
        assert real_cinder.volume_path(volume.id).stat().st_size == 2 * 1024**3
        conn.block_storage.set_volume_bootable_status(volume, True)
        assert conn.block_storage.get_volume(volume).is_bootable is True
        conn.block_storage.set_volume_image_metadata(
            volume, hw_machine_type="q35", hw_firmware_type="uefi", os_type="windows"
        )
        meta = conn.block_storage.get_volume(volume).volume_image_metadata
        assert meta == {"hw_machine_type": "q35", "hw_firmware_type": "uefi", "os_type": "windows"}
    finally:
        _delete(conn, volume)


def test_attachment_returns_the_backing_file(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser
) -> None:
    conn = _connect(real_services, project)
    volume = _available(conn, conn.block_storage.create_volume(size=1, name="attach"))
    # Nova attaches with the user's token plus its own service token; Cinder lets only
    # such a request delete an attachment that has connection_info (bug #2004555).
    nova = real_services.connect_with_service_token(
        project.auth(real_services.auth_url), _nova_service_user(real_services)
    )
    try:
        # As Nova does it: reserve (no connector), then update with the compute's connector.
        reserved = nova.block_storage.create_attachment(volume, instance=str(uuid.uuid4()))
        assert not reserved.connection_info
        assert conn.block_storage.get_volume(volume).status == "reserved"
        attachment = nova.block_storage.update_attachment(
            reserved, connector=NOVA_FAKE_CONNECTOR
        )
        # The attachments API answers connection_info flattened (the driver's "data" keys
        # beside driver_volume_type); Nova's cinder client puts "data" back.
        info = attachment.connection_info
        assert info == {
            "driver_volume_type": "local",
            "device_path": str(real_cinder.volume_path(volume.id)),
            "access_mode": "rw",
            "attachment_id": attachment.id,
            "cacheable": False,
            "encrypted": False,
            "enforce_multipath": False,
            "qos_specs": None,
        }
        assert Path(info["device_path"]).is_file()
        nova.block_storage.complete_attachment(attachment)
        attached = conn.block_storage.get_volume(volume)
        assert attached.status == "in-use"
        assert [a["attachment_id"] for a in attached.attachments] == [attachment.id]
        # In use: deleting is refused.
        with pytest.raises(sdk_exc.HttpException) as refused:
            conn.block_storage.delete_volume(volume)
        assert refused.value.status_code == 400
        nova.block_storage.delete_attachment(attachment)
        _available(conn, volume)
    finally:
        _delete(conn, volume)


_NOVA_USER: dict[str, str] = {}


def _nova_service_user(rs: RealServices) -> dict[str, str]:
    if not _NOVA_USER:
        _NOVA_USER.update(rs.create_service_user(f"nova-{uuid.uuid4().hex[:6]}"))
    return _NOVA_USER


def test_upload_to_image_as_qcow2(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser, tmp_path: Path
) -> None:
    conn = _connect(real_services, project)
    volume = _available(conn, conn.block_storage.create_volume(size=1, name="captured"))
    image = None
    try:
        conn.block_storage.set_volume_image_metadata(volume, os_type="windows")
        # The guest writes the disk.
        written = b"MBR!" + bytes(508) + b"\x55\xaa" + b"NTFS" * 100_000
        with real_cinder.volume_path(volume.id).open("r+b") as fh:
            fh.write(written)
            fh.seek(300 * 1024**2)
            fh.write(b"far")
        began = time.monotonic()
        result = conn.block_storage.upload_volume_to_image(
            volume, "captured", disk_format="qcow2", container_format="bare"
        )
        image = conn.image.get_image(result["image_id"])
        image = conn.image.wait_for_status(
            image, "active", failures=["killed"], interval=0.5, wait=WAIT
        )
        upload_seconds = time.monotonic() - began
        # Real Cinder: Glance may show the image active while the volume is still
        # "uploading" (deleting it then is a 400); the volume comes back to available.
        _available(conn, volume)
        assert image.disk_format == "qcow2"
        assert image.owner == project.project_id
        assert image.os_type == "windows"  # volume_image_metadata carried into the image
        qcow2 = tmp_path / "image.qcow2"
        with qcow2.open("wb") as out:
            for chunk in conn.image.download_image(image, stream=True).iter_content(1 << 20):
                out.write(chunk)
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", str(qcow2)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert '"format": "qcow2"' in info
        raw = tmp_path / "image.raw"
        subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(raw)],
            check=True,
        )
        assert raw.stat().st_size == 1024**3
        with raw.open("rb") as fh:
            assert fh.read(len(written)) == written
            fh.seek(300 * 1024**2)
            assert fh.read(4) == b"far\0"
        print(f"\nupload-to-image qcow2 of a 1 GiB volume: {upload_seconds:.1f}s")
    finally:
        # A volume cannot be deleted while it is uploading.
        _available(conn, volume)
        _delete(conn, volume)
        if image is not None:
            conn.image.delete_image(image)


def test_quota_set_per_project_refuses_with_413(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser
) -> None:
    conn = _connect(real_services, project)
    real_cinder.set_quota(project.project_id, volumes=1)
    first = _available(conn, conn.block_storage.create_volume(size=1, name="one"))
    try:
        with pytest.raises(sdk_exc.HttpException) as over:
            conn.block_storage.create_volume(size=1, name="two")
        assert over.value.status_code == 413
        assert "VolumeLimitExceeded" in str(over.value) or "quota" in str(over.value).lower()
    finally:
        _delete(conn, first)


def test_report_cinder_start_time_and_memory(
    real_cinder: RealCinder, capsys: pytest.CaptureFixture[str]
) -> None:
    mem = real_cinder.rss_kb()
    assert mem["peak"] and mem["rss"]
    with capsys.disabled():
        print(
            f"\nreal cinder: ready in {real_cinder.timings['startup']:.1f}s "
            f"(process {real_cinder.timings['process_ready']:.1f}s), "
            f"RSS {mem['rss'] // 1024} MiB, peak {mem['peak'] // 1024} MiB"
        )
