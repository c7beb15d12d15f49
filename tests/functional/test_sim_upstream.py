"""The simulated compute and block storage refuse what Nova and Cinder would refuse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openstack import exceptions as sdk_exc

from osbuild_sim import SimCloud, upstream_schemas

FLOPPY = (
    "Invalid input for field/attribute source_type. Value: floppy. "
    "'floppy' is not one of ['volume', 'image', 'snapshot', 'blank']"
)


@pytest.fixture(scope="module")
def sim(schema_cache: Path) -> Iterator[SimCloud]:
    with SimCloud(speed=600.0) as cloud:
        yield cloud


@pytest.fixture(scope="module")
def conn(sim: SimCloud) -> Any:
    return sim.connect()


@pytest.fixture(scope="module")
def iso_volume(conn: Any) -> Any:
    image = conn.image.find_image("windows-server-2022-x64.iso", ignore_missing=False)
    volume = conn.block_storage.create_volume(size=6, image_id=image.id, name="iso")
    return conn.block_storage.wait_for_status(volume, "available", wait=120, interval=0.05)


def _mapping(volume_id: str, **overrides: Any) -> list[dict[str, Any]]:
    entry = {
        "boot_index": 0,
        "uuid": volume_id,
        "source_type": "volume",
        "destination_type": "volume",
        "device_type": "cdrom",
        "disk_bus": "sata",
    }
    entry.update(overrides)
    return [entry]


def test_malformed_mapping_is_refused_with_novas_text(conn: Any, iso_volume: Any) -> None:
    flavor = conn.compute.find_flavor("m1.large", ignore_missing=False)
    body = {
        "server": {
            "name": "osbuild-t-builder",
            "flavorRef": flavor.id,
            "networks": "none",
            "block_device_mapping_v2": _mapping(iso_volume.id, source_type="floppy"),
        }
    }
    resp = conn.compute.post("/servers", json=body, microversion="2.94", raise_exc=False)
    assert resp.status_code == 400
    assert resp.json() == {"badRequest": {"code": 400, "message": FLOPPY}}
    # The same through openstacksdk's create_server, as the orchestrator calls it.
    with pytest.raises(sdk_exc.BadRequestException, match=r"'floppy' is not one of"):
        conn.compute.create_server(
            name="osbuild-t-builder",
            flavor_id=flavor.id,
            networks="none",
            block_device_mapping=_mapping(iso_volume.id, source_type="floppy"),
        )
    assert not [s for s in conn.compute.servers() if s.name == "osbuild-t-builder"]


def test_microversion_decides_what_is_malformed(conn: Any, iso_volume: Any) -> None:
    flavor = conn.compute.find_flavor("m1.large", ignore_missing=False)
    body = {
        "server": {
            "name": "mv",
            "flavorRef": flavor.id,
            "networks": "none",
            "block_device_mapping_v2": _mapping(iso_volume.id),
        }
    }
    # networks="none" only exists from 2.37: Nova's 2.36 schema wants a list.
    old = conn.compute.post("/servers", json=body, microversion="2.36", raise_exc=False)
    assert old.status_code == 400
    assert "'none' is not of type 'array'" in old.json()["badRequest"]["message"]


def test_malformed_volume_request_is_refused_with_cinders_text(conn: Any) -> None:
    resp = conn.block_storage.post(
        "/volumes",
        json={"volume": {"size": "six", "name": "bad"}},
        microversion="3.70",
        raise_exc=False,
    )
    assert resp.status_code == 400
    message = resp.json()["badRequest"]["message"]
    assert message.startswith("Invalid input for field/attribute size. Value: six.")
    assert not [v for v in conn.block_storage.volumes() if v.name == "bad"]


def test_volume_action_bodies_are_checked(conn: Any, iso_volume: Any) -> None:
    resp = conn.block_storage.post(
        f"/volumes/{iso_volume.id}/action",
        json={"os-volume_upload_image": {"image_name": "x", "disk_format": "floppy"}},
        microversion="3.70",
        raise_exc=False,
    )
    assert resp.status_code == 400
    assert "'floppy' is not one of" in resp.json()["badRequest"]["message"]
    assert conn.block_storage.get_volume(iso_volume.id).status == "available"


def test_a_valid_builder_passes_and_its_create_answer_fits_novas_schema(
    conn: Any, iso_volume: Any
) -> None:
    flavor = conn.compute.find_flavor("m1.large", ignore_missing=False)
    server = conn.compute.create_server(
        name="osbuild-t-ok",
        flavor_id=flavor.id,
        networks="none",
        block_device_mapping=_mapping(iso_volume.id),
        tags=["osbuild"],
    )
    try:
        assert server.id
        assert not [p for p in upstream_schemas.response_problems() if "servers.create" in p]
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=60, interval=0.05)


def test_a_whole_build_gets_only_answers_novas_response_schemas_accept(
    schema_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from osbuild.cli import main
    from osbuild.resources import examples_dir
    from osbuild_sim.media import cloudbase_msi_standin

    shutil.copy(examples_dir() / "ws2022-standard.yaml", tmp_path)
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
    before = len(upstream_schemas.response_problems())
    with SimCloud(speed=600.0) as cloud:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE",
                           str(cloud.write_clouds_yaml(tmp_path / "clouds.yaml")))
        code = main(["build", str(tmp_path / "ws2022-standard.yaml"), "--os-cloud",
                     cloud.cloud_name, "--time-scale", "600", "--json",
                     "--log-dir", str(tmp_path / "logs")])
    assert code == 0
    assert upstream_schemas.response_problems()[before:] == []


def test_instance_actions_answers_fit_novas_schemas_for_the_owner_and_the_admin(
    sim: SimCloud, conn: Any
) -> None:
    # The schemas are in force for these answers (an empty action is refused).
    assert upstream_schemas.validate_response(
        "compute", "instance_actions.show", "2.84", {"instanceAction": {}}) is not None
    from osbuild_sim.guest import disk_record_bytes

    sim.faults.add_scenario("image_killed", name="^upstream-snap$")
    base = conn.image.create_image(name="upstream-root", data=disk_record_bytes({"format": 1}),
                                   disk_format="raw", container_format="bare",
                                   allow_duplicates=True)
    flavor = conn.compute.find_flavor("m1.small", ignore_missing=False)  # a local root
    server = conn.compute.create_server(name="upstream-local", flavor_id=flavor.id,
                                        image_id=base.id, networks="none")
    conn.compute.wait_for_server(server, wait=60, interval=0.05)
    before = len(upstream_schemas.response_problems())
    try:
        image = conn.compute.create_server_image(server, "upstream-snap")
        conn.image.wait_for_delete(image, wait=60, interval=0.05)
        admin = sim.connect(admin=True)
        for who in (conn, admin):
            for microversion in ("2.1", "2.51", "2.58", "2.62", "2.84", "2.96"):
                listed = who.compute.get(f"/servers/{server.id}/os-instance-actions",
                                         microversion=microversion).json()
                request_id = listed["instanceActions"][0]["request_id"]
                who.compute.get(f"/servers/{server.id}/os-instance-actions/{request_id}",
                                microversion=microversion)
        assert upstream_schemas.response_problems()[before:] == []
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=60, interval=0.05)
