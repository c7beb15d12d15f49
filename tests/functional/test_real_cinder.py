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
import requests
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


# ---------------------------------------------------------------- fidelity probes
# What the simulated block storage learnt from these (tests/sim/test_cinder_fidelity.py).


def _statuses_during_upload(conn: Any, volume: Any, image_id: str) -> list[tuple[str, str]]:
    """(volume status, image status) each time either changes, until both settle."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        now = (conn.block_storage.get_volume(volume.id).status,
               conn.image.get_image(image_id).status)
        if not seen or seen[-1] != now:
            seen.append(now)
        if now == ("available", "active") or "killed" in now or "error" in now:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"upload did not settle: {seen}")


def test_upload_to_image_statuses_and_the_image_it_makes(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser, tmp_path: Path
) -> None:
    conn = _connect(real_services, project)
    source = conn.image.create_image(
        name="with-props", data=_iso(tmp_path), disk_format="iso", container_format="bare",
        allow_duplicates=True, os_type="windows", hw_cdrom_bus="sata",
    )
    source = conn.image.wait_for_status(source, "active", failures=["killed"], wait=WAIT)
    volume = _available(conn, conn.block_storage.create_volume(
        size=1, image_id=source.id, name="from-image"))
    image_id = None
    try:
        meta = dict(volume.volume_image_metadata)
        print(f"\nvolume_image_metadata of a volume from an image: {sorted(meta.items())}")
        assert meta["signature_verified"] == "False"
        assert meta["os_type"] == "windows" and meta["image_id"] == source.id
        began = time.monotonic()
        reply = conn.block_storage.post(
            f"/volumes/{volume.id}/action", microversion="3.1",
            json={"os-volume_upload_image": {"image_name": "from-volume", "disk_format": "raw",
                                             "container_format": "bare", "force": True}},
        ).json()["os-volume_upload_image"]
        print(f"upload reply: {sorted(reply)} status={reply['status']}")
        image_id = reply["image_id"]
        seen = _statuses_during_upload(conn, volume, image_id)
        print(f"upload of 1 GiB raw: {time.monotonic() - began:.1f}s, statuses {seen}")
        assert seen[0][0] == "uploading"
        assert seen[-1] == ("available", "active")
        images = [i for _, i in seen]
        assert images.index("active") > images.index("queued")
        raw = conn.image.get(f"/images/{image_id}").json()
        print(f"image from a volume: {sorted(raw.items())}")
        assert raw["min_disk"] == 0
        assert raw["size"] == 1024**3 and raw["disk_format"] == "raw"
        assert raw["os_type"] == "windows" and raw["hw_cdrom_bus"] == "sata"
        assert "signature_verified" not in raw and "image_id" not in raw
        assert not [k for k in raw if k.startswith("os_glance")]
    finally:
        _available(conn, volume)
        _delete(conn, volume)
        conn.image.delete_image(source)
        if image_id:
            conn.image.delete_image(image_id)


def test_a_member_sees_no_admin_fields_and_attachments_need_3_27(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser
) -> None:
    conn = _connect(real_services, project)
    volume = _available(conn, conn.block_storage.create_volume(size=1, name="fields"))
    try:
        for version in ("3.0", "3.70"):
            body = conn.block_storage.get(f"/volumes/{volume.id}",
                                          microversion=version).json()["volume"]
            print(f"\nvolume keys at {version}: {sorted(body)}")
            assert body["os-vol-tenant-attr:tenant_id"] == project.project_id
            for admin_only in ("os-vol-host-attr:host", "os-vol-mig-status-attr:migstat",
                               "os-vol-mig-status-attr:name_id", "migration_status",
                               "provider_id", "cluster_name"):
                assert admin_only not in body
        old = conn.block_storage.get("/attachments", microversion="3.0", raise_exc=False)
        print(f"GET /attachments at 3.0: {old.status_code} {old.text}")
        assert old.status_code == 404
        assert old.json() == {"itemNotFound": {"code": 404,
                                               "message": "The resource could not be found."}}
        new = conn.block_storage.get("/attachments", microversion="3.27")
        assert new.json() == {"attachments": []}
    finally:
        _delete(conn, volume)


def test_urls_with_and_without_the_project_and_a_foreign_project(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser
) -> None:
    conn = _connect(real_services, project)
    token = conn.session.get_token()
    base = real_cinder.url
    with_project = requests.get(f"{base}/{project.project_id}/volumes",
                                headers={"X-Auth-Token": token}, timeout=30)
    without = requests.get(f"{base}/volumes", headers={"X-Auth-Token": token}, timeout=30)
    foreign = requests.get(f"{base}/{uuid.uuid4().hex}/volumes",
                           headers={"X-Auth-Token": token}, timeout=30)
    print(f"\nwith project {with_project.status_code}, without {without.status_code}, "
          f"foreign {foreign.status_code} {foreign.text}")
    assert with_project.status_code == without.status_code == 200
    assert foreign.status_code == 400
    assert foreign.json() == {"badRequest": {"code": 400, "message": "Malformed request url"}}


def test_over_quota_answer_shape(
    real_services: RealServices, real_cinder: RealCinder, project: ProjectUser
) -> None:
    conn = _connect(real_services, project)
    real_cinder.set_quota(project.project_id, volumes=1, gigabytes=3)
    quota = conn.block_storage.get(f"/os-quota-sets/{project.project_id}?usage=True").json()
    print(f"\nquota set with usage: {quota}")
    first = _available(conn, conn.block_storage.create_volume(size=2, name="one"))
    try:
        count = conn.block_storage.post("/volumes", json={"volume": {"size": 1, "name": "two"}},
                                        raise_exc=False)
        print(f"over the count: {count.status_code} {dict(count.headers)} {count.text}")
        assert count.status_code == 413
        assert count.headers["Retry-After"] == "0"
        assert count.json() == {"overLimit": {
            "code": 413, "retryAfter": "0",
            "message": "VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded "
                       "for quota 'volumes'."}}
        real_cinder.set_quota(project.project_id, volumes=5)
        size = conn.block_storage.post("/volumes", json={"volume": {"size": 2, "name": "two"}},
                                       raise_exc=False)
        print(f"over the size: {size.status_code} {size.text}")
        assert size.status_code == 413
        assert size.json()["overLimit"]["message"] == (
            "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
            "gigabytes quota. Requested 2G, quota is 3G and 2G has been consumed.")
    finally:
        _delete(conn, first)
