"""Cinder through openstacksdk: status machines, image metadata, upload-to-image, quotas."""

from __future__ import annotations

from typing import Any

import pytest
from openstack import exceptions

from osbuild_sim import storage
from osbuild_sim.storage import (
    DOWNLOAD_SECONDS_PER_GB,
    DOWNLOAD_START_SECONDS,
    UPLOAD_STATUS_LAG_SECONDS,
)
from tests.sim.conftest import run_until, volume_status


def test_volume_from_image_goes_creating_downloading_available(sim: Any, conn: Any) -> None:
    image = conn.image.find_image("windows-server-2022-x64.iso")
    volume = conn.block_storage.create_volume(size=6, image_id=image.id, name="iso",
                                              metadata={"osbuild_role": "iso"})
    assert volume.status == "creating"
    sim.advance(DOWNLOAD_START_SECONDS + 0.5)
    assert volume_status(conn, volume.id) == "downloading"
    sim.advance(30)
    assert volume_status(conn, volume.id) == "downloading"  # 6 GB take about a minute
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    done = conn.block_storage.get_volume(volume.id)
    assert done.is_bootable is True
    assert done.volume_image_metadata["image_id"] == image.id
    seeded = sim.world.images[image.id].properties
    assert seeded and all(done.volume_image_metadata[k] == v for k, v in seeded.items())
    assert done.metadata == {"osbuild_role": "iso"}
    assert sim.world.volumes[volume.id].data == sim.world.images[image.id].data


def test_a_faster_work_pace_shortens_the_copy_not_its_start(sim: Any, conn: Any) -> None:
    # What the end-to-end tests use: data copies 3x faster, the API's own delays unchanged.
    sim.world.work_pace = 3.0
    image = conn.image.find_image("windows-server-2022-x64.iso")
    volume = conn.block_storage.create_volume(size=6, image_id=image.id, name="iso")
    sim.advance(DOWNLOAD_START_SECONDS - 0.5)
    assert volume_status(conn, volume.id) == "creating"
    sim.advance(1.0 + DOWNLOAD_SECONDS_PER_GB * 6 / 3)
    assert volume_status(conn, volume.id) == "available"  # 20 s instead of a minute


def test_a_volume_from_a_qcow2_capture_copies_what_glance_stores_not_the_disk(
        sim: Any, conn: Any) -> None:
    # Cinder's generic path downloads the image file and qemu-img converts it onto the volume
    # (cinder/image/image_utils.py fetch_to_volume_format): a 40 GB disk captured as 12 GiB
    # of qcow2 costs 12 GiB of copying, not 40 (the refresh's copy of the current image).
    image = storage.new_image(sim.world, "capture", disk_format="qcow2",
                              container_format="bare", status="active", data=b"disk",
                              min_disk=40, stored_size=12 * storage.GIB,
                              virtual_size=40 * storage.GIB)
    volume = conn.block_storage.create_volume(size=40, image_id=image.id, name="target")
    sim.advance(DOWNLOAD_START_SECONDS + DOWNLOAD_SECONDS_PER_GB * 11)
    assert volume_status(conn, volume.id) == "downloading"
    sim.advance(DOWNLOAD_SECONDS_PER_GB * 1 + 1.0)
    assert volume_status(conn, volume.id) == "available"


def test_volume_smaller_than_image_is_refused(conn: Any) -> None:
    image = conn.image.find_image("windows-server-2022-x64.iso")
    conn.image.update_image(image, min_disk=6)
    with pytest.raises(exceptions.BadRequestException, match="larger than volume size 1GB"):
        conn.block_storage.create_volume(size=1, image_id=image.id, name="small")


def test_a_volume_smaller_than_the_images_virtual_size_is_refused(sim: Any, conn: Any) -> None:
    # Real Cinder checks the virtual size beside min_disk (cinder/volume/volume_utils.py
    # check_image_metadata -> cinder/image/image_utils.py check_virtual_size); the simulator
    # took a 30 GB boot-test volume of a 40 GB capture whose min_disk said 30 (session 30).
    image = storage.new_image(sim.world, "capture", disk_format="qcow2",
                              container_format="bare", status="active", data=b"disk",
                              min_disk=30, stored_size=12 * storage.GIB,
                              virtual_size=40 * storage.GIB)
    with pytest.raises(exceptions.BadRequestException,
                       match="Image virtual size is 40GB and doesn't fit in a volume of size "
                             "30GB"):
        conn.block_storage.create_volume(size=30, image_id=image.id, name="verify")
    conn.block_storage.create_volume(size=40, image_id=image.id, name="verify")


def test_metadata_filter_and_wait_for_status(fast_sim: Any) -> None:
    conn = fast_sim.connect()
    a = conn.block_storage.create_volume(size=1, name="a", metadata={"osbuild_build_id": "1"})
    conn.block_storage.create_volume(size=1, name="b", metadata={"osbuild_build_id": "2"})
    conn.block_storage.wait_for_status(a, "available", failures=["error"], interval=0.01,
                                       wait=10)
    # Cinder literal_evals the filter; openstacksdk sends `properties` as given.
    found = list(conn.block_storage.volumes(properties=str({"osbuild_build_id": "1"})))
    assert [v.name for v in found] == ["a"]
    assert [v.name for v in conn.block_storage.volumes(name="b")] == ["b"]


def test_set_image_metadata_flows_into_upload_to_image(sim: Any, conn: Any) -> None:
    volume = conn.block_storage.create_volume(size=30, name="target")
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    sim.world.volumes[volume.id].data = b"disk bytes"
    conn.block_storage.set_volume_image_metadata(volume, os_type="windows",
                                                 hw_machine_type="q35", hw_disk_bus="virtio")
    assert conn.block_storage.get_volume(volume.id).volume_image_metadata == {
        "os_type": "windows", "hw_machine_type": "q35", "hw_disk_bus": "virtio"}
    answer = conn.block_storage.upload_volume_to_image(
        volume, "published", disk_format="raw", container_format="bare",
        visibility="private", protected=False)
    image_id = answer["image_id"]
    assert volume_status(conn, volume.id) == "uploading"
    assert conn.image.get_image(image_id).status == "queued"
    with pytest.raises(exceptions.BadRequestException, match="Volume status must be available"):
        conn.block_storage.delete_volume(volume)
    run_until(sim, lambda: conn.image.get_image(image_id).status == "active", step=0.5)
    assert volume_status(conn, volume.id) == "uploading"  # for a moment, as real Cinder
    sim.advance(UPLOAD_STATUS_LAG_SECONDS)
    assert volume_status(conn, volume.id) == "available"
    image = conn.image.get_image(image_id)
    assert image.os_type == "windows" and image.hw_machine_type == "q35"
    assert image.hw_disk_bus == "virtio"
    assert conn.image.download_image(image).content == b"disk bytes"


def test_delete_goes_through_deleting(sim: Any, conn: Any) -> None:
    volume = conn.block_storage.create_volume(size=1, name="gone")
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    conn.block_storage.delete_volume(volume)
    assert volume_status(conn, volume.id) == "deleting"
    run_until(sim, lambda: conn.block_storage.find_volume(volume.id) is None)
    with pytest.raises(exceptions.NotFoundException, match="could not be found"):
        conn.block_storage.get_volume(volume.id)


def test_volume_quota_is_413(sim: Any, conn: Any) -> None:
    sim.faults.set_quota("volume", gigabytes=10)
    conn.block_storage.create_volume(size=8, name="big")
    with pytest.raises(exceptions.HttpException) as err:
        conn.block_storage.create_volume(size=3, name="more")
    assert err.value.status_code == 413
    assert "Requested 3G, quota is 10G and 8G has been consumed." in str(err.value)


def test_volume_error_from_image_leaves_a_user_message(sim: Any, conn: Any) -> None:
    sim.faults.add_scenario("volume_error_from_image", name="-iso$", times=1)
    image = conn.image.find_image("virtio-win.iso")
    volume = conn.block_storage.create_volume(size=1, image_id=image.id, name="b-iso")
    run_until(sim, lambda: volume_status(conn, volume.id) != "creating"
              and volume_status(conn, volume.id) != "downloading")
    assert volume_status(conn, volume.id) == "error"
    with pytest.raises(exceptions.ResourceFailure):
        conn.block_storage.wait_for_status(volume, "available", failures=["error"],
                                           interval=0.01, wait=5)
    # Cinder serves messages from microversion 3.3; openstacksdk's messages() sends none.
    with pytest.raises(exceptions.NotFoundException):
        list(conn.block_storage.messages())
    answer = conn.block_storage.get("/messages", microversion="3.3").json()["messages"]
    messages = [m for m in answer if m["resource_uuid"] == volume.id]
    assert [m["event_id"] for m in messages] == ["VOLUME_VOLUME_001_003"]
    assert "create volume from image" in messages[0]["user_message"]
    # once: the retry works
    again = conn.block_storage.create_volume(size=1, image_id=image.id, name="b-iso")
    run_until(sim, lambda: volume_status(conn, again.id) == "available")


def test_upload_stuck_in_uploading_cannot_be_deleted(sim: Any, conn: Any) -> None:
    sim.faults.add_scenario("upload_stuck", name="target")
    volume = conn.block_storage.create_volume(size=1, name="target")
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    conn.block_storage.upload_volume_to_image(volume, "stuck", disk_format="raw")
    sim.advance(24 * 3600)
    assert volume_status(conn, volume.id) == "uploading"
    with pytest.raises(exceptions.BadRequestException):
        conn.block_storage.delete_volume(volume)


def test_a_failed_cinder_upload_deletes_the_image_and_leaves_a_user_message(
    sim: Any, conn: Any
) -> None:
    # Glance restores a failed upload's image to queued (glance/api/v2/image_data.py
    # _restore) and Cinder deletes a queued image, with a user message (cinder/volume/
    # manager.py copy_volume_to_image: COPY_VOLUME_TO_IMAGE, FAILED_TO_UPLOAD_VOLUME).
    sim.faults.add_scenario("image_killed", name="^doomed$")
    volume = conn.block_storage.create_volume(size=1, name="target")
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    image_id = conn.block_storage.upload_volume_to_image(volume, "doomed")["image_id"]
    run_until(sim, lambda: conn.image.find_image(image_id) is None, step=0.5)
    run_until(sim, lambda: volume_status(conn, volume.id) == "available", step=0.5)
    messages = conn.block_storage.get("/messages", microversion="3.3").json()["messages"]
    assert [(m["resource_uuid"], m["event_id"], m["user_message"]) for m in messages] == [
        (volume.id, "VOLUME_VOLUME_003_004",
         "copy volume to image: Failed to upload volume to image at backend.")]


def test_volume_limits_and_types(conn: Any) -> None:
    conn.block_storage.create_volume(size=2, name="counted")
    limits = conn.block_storage.get_limits().absolute
    assert limits.total_volumes_used == 1 and limits.total_gigabytes_used == 2
    assert [t.name for t in conn.block_storage.types()] == ["__DEFAULT__"]
    with pytest.raises(exceptions.NotFoundException):
        conn.block_storage.create_volume(size=1, name="x", volume_type="gold")


def test_volume_metadata_collection_and_items(conn: Any) -> None:
    volume = conn.block_storage.create_volume(size=1, name="meta", metadata={"a": "1"})
    path = f"/volumes/{volume.id}/metadata"
    merged = conn.block_storage.post(path, json={"metadata": {"b": "2"}}).json()
    assert merged == {"metadata": {"a": "1", "b": "2"}}
    assert conn.block_storage.put(path, json={"metadata": {"c": "3"}}).json() == {
        "metadata": {"c": "3"}}
    assert conn.block_storage.put(f"{path}/d", json={"meta": {"d": "4"}}).json() == {
        "meta": {"d": "4"}}
    assert conn.block_storage.get(f"{path}/d").json() == {"meta": {"d": "4"}}
    assert conn.block_storage.delete(f"{path}/d").status_code == 200
    missing = conn.block_storage.get(f"{path}/d", raise_exc=False)
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == (
        f"Volume {volume.id} has no metadata with key d.")
    assert conn.block_storage.get_volume(volume.id).metadata == {"c": "3"}
