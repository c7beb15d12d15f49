"""The simulated compute, block storage and network attached to real Keystone and Glance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from osbuild.cli import main
from osbuild_sim.guest import read_disk_record
from tests.support.attached import AttachedSim
from tests.support.qcow2 import is_qcow2, qcow2_to_raw
from tests.support.realbuilds import write_spec
from tests.support.realservices import ProjectUser, RealServices

SPEED = 600.0
CLOUD = "osbuild-attached"


@pytest.fixture(scope="module")
def attached(real_services: RealServices, schema_cache: Path) -> Iterator[AttachedSim]:
    with AttachedSim(real_services, speed=SPEED) as sim:
        yield sim


@pytest.fixture(scope="module")
def builder_user(real_services: RealServices) -> ProjectUser:
    return real_services.create_project_user("images", "image-builder")


@pytest.fixture
def conn(real_services: RealServices, builder_user: ProjectUser) -> Any:
    return real_services.connect(builder_user.auth(real_services.auth_url))


def _sim_leftovers(attached: AttachedSim) -> list[str]:
    resources = attached.sim.resources()
    kinds = ("servers", "volumes", "images", "snapshots", "attachments", "ports", "keypairs")
    return [
        f"{kind} {item.get('name')} {item.get('id')}"
        for kind in kinds
        for item in resources.get(kind, [])
        if not item.get("seeded")
    ]


def test_catalog_points_compute_volume_network_at_the_simulator(
    attached: AttachedSim, conn: Any, builder_user: ProjectUser
) -> None:
    base = attached.sim.base_url
    assert conn.compute.get_endpoint().startswith(f"{base}/compute/v2.1")
    assert conn.block_storage.get_endpoint().rstrip("/") == (
        f"{base}/volume/v3/{builder_user.project_id}"
    )
    assert conn.network.get_endpoint().startswith(f"{base}/network")
    assert conn.image.get_endpoint().startswith(attached.rs.glance_url)
    assert [f.name for f in conn.compute.flavors()]


def test_tokens_are_checked_by_the_real_keystone(
    attached: AttachedSim, real_services: RealServices, builder_user: ProjectUser
) -> None:
    assert attached.tokens is not None
    fresh = real_services.connect(builder_user.auth(real_services.auth_url))
    before = attached.tokens.validations
    list(fresh.block_storage.volumes())
    assert attached.tokens.validations == before + 1  # a new token: asked Keystone
    list(fresh.network.networks())
    list(fresh.compute.flavors())
    assert attached.tokens.validations == before + 1  # then cached, like keystonemiddleware
    resp = requests.get(
        f"{attached.sim.base_url}/compute/v2.1/servers",
        headers={"X-Auth-Token": "gAAAAAnot-a-real-token"},
        timeout=30,
    )
    assert resp.status_code == 401
    assert attached.rs.auth_url.rsplit("/v3", 1)[0] in resp.headers["WWW-Authenticate"]


def test_volume_reads_the_iso_from_glance_and_uploads_back(
    attached: AttachedSim, conn: Any, builder_user: ProjectUser
) -> None:
    iso = conn.image.find_image("windows-server-2022-x64.iso", ignore_missing=False)
    iso_bytes = b"".join(conn.image.download_image(iso, stream=True).iter_content(65536))
    volume = conn.block_storage.create_volume(size=6, image_id=iso.id, name="iso-copy")
    volume = conn.block_storage.wait_for_status(volume, "available", wait=120, interval=0.05)
    assert volume.volume_image_metadata["image_id"] == iso.id
    answer = conn.block_storage.upload_volume_to_image(
        volume, "iso-roundtrip", disk_format="raw", container_format="bare"
    )
    image = conn.image.get_image(answer["image_id"])
    try:
        image = conn.image.wait_for_status(
            image, "active", failures=["killed"], wait=120, interval=0.1
        )
        assert image.owner == builder_user.project_id
        data = b"".join(conn.image.download_image(image, stream=True).iter_content(65536))
        assert data == iso_bytes
        assert _raw_image(conn, image.id)["os_version"] == "2022"  # volume_image_metadata carried
    finally:
        conn.image.delete_image(image.id, ignore_missing=True)
        conn.block_storage.delete_volume(volume)
        conn.block_storage.wait_for_delete(volume, wait=120, interval=0.05)
    assert not attached.bridge.errors


# ---------------------------------------------------------------- osbuild build, end to end


def _build(
    workdir: Path, capsys: Any, spec: Path, *extra: str
) -> tuple[int, list[dict[str, Any]], str]:
    capsys.readouterr()
    code = main(["build", str(spec), "--os-cloud", CLOUD, "--time-scale", str(SPEED),
                 "--log-dir", str(workdir / "logs"), "--json", *extra])  # fmt: skip
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, events, err


@pytest.fixture
def clouds_yaml(
    attached: AttachedSim,
    real_services: RealServices,
    builder_user: ProjectUser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    path = real_services.write_clouds_yaml(
        tmp_path / "clouds.yaml", CLOUD, builder_user.auth(real_services.auth_url)
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return path


def _raw_image(conn: Any, image_id: str) -> dict[str, Any]:
    """The image document exactly as Glance returns it (properties at the top level)."""
    return dict(conn.image.get(f"/images/{image_id}").json())


def _glance_images(conn: Any) -> dict[str, Any]:
    return {i.id: i for i in conn.image.images()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("example", "target"),
    [("ws2022-standard.yaml", "volume"), ("ws2019-core-local.yaml", "local")],
)
def test_osbuild_build_against_real_keystone_and_glance(
    attached: AttachedSim,
    conn: Any,
    clouds_yaml: Path,
    tmp_path: Path,
    capsys: Any,
    example: str,
    target: str,
) -> None:
    before = set(_glance_images(conn))
    code, events, err = _build(tmp_path, capsys, write_spec(tmp_path, example))
    assert code == 0, (err, attached.bridge.errors, json.dumps(events[-1:]))
    done = [e for e in events if e["event"] == "build.succeeded"][-1]
    image = conn.image.get_image(done["image_id"])
    assert image.status == "active"
    props = _raw_image(conn, image.id)
    assert props["osbuild_build_id"] == done["build_id"]
    assert props["os_type"] == "windows"
    assert props["hw_machine_type"] == "q35"
    assert "osbuild" in props["tags"]
    # createImage (local) copies the temporary root image's properties: publish drops them.
    assert not {"image_type", "base_image_ref", "instance_uuid", "boot_roles"} & set(props)
    assert not [k for k in props if k.startswith("owner_specified.")]
    data = b"".join(conn.image.download_image(image, stream=True).iter_content(65536))
    if props["disk_format"] == "qcow2":
        assert is_qcow2(data), "a qcow2 image must hold qcow2 data"
        data = qcow2_to_raw(data)
    record = read_disk_record(data)
    assert record is not None and record["build_id"] == done["build_id"]
    # The config ISO went through the real Glance's format inspection, and is gone again.
    created = [e for e in events if e["event"] == "resource.created" and e["kind"] == "image"]
    config_ids = {e["id"] for e in created if e["id"] != image.id}
    assert config_ids, "no config ISO image was uploaded"
    after = _glance_images(conn)
    assert set(after) - before == {image.id}
    assert not config_ids & set(after)
    assert _sim_leftovers(attached) == []
    assert not attached.bridge.errors
    conn.image.delete_image(image)
