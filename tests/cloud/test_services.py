"""The typed service modules against the simulated cloud: what their records carry."""

from __future__ import annotations

from typing import Any

import pytest
from openstack import exceptions as sdk_exc

from osbuild.cloud import compute, images, volumes
from osbuild.cloud.image_fields import custom_properties
from osbuild_sim.media import seed_images
from tests.sim.conftest import run_until


def test_flavors_servers_and_limits_are_plain_records(sim: Any, conn: Any) -> None:
    flavor = compute.find_flavor(conn, "2")
    assert flavor is not None and flavor.ram > 0 and flavor.vcpus > 0
    assert compute.find_flavor(conn, "no-such-flavor") is None
    server = compute.create_server(
        conn, name="typed", flavor_id=flavor.id, networks="none", tags=["osbuild"],
        block_device_mapping=[{"boot_index": 0, "source_type": "blank",
                               "destination_type": "volume", "volume_size": 1,
                               "delete_on_termination": True}])
    run_until(sim, lambda: compute.get_server(conn, server.id).status != "BUILD")
    assert compute.get_server(conn, server.id).status == "ACTIVE"
    assert [s.id for s in compute.servers(conn, tag="osbuild", name="typed")] == [server.id]
    assert compute.servers(conn, tag="osbuild", name="other") == []
    # Nothing posted yet: no password, not an error.
    assert compute.server_password(conn, server.id) is None
    limits = compute.absolute_limits(conn)
    assert isinstance(limits["maxTotalInstances"], int)
    assert isinstance(limits["totalInstancesUsed"], int) and limits["totalInstancesUsed"] >= 1


def test_a_volume_made_from_an_image_names_it_and_its_server(sim: Any, conn: Any) -> None:
    seed = images.find_image(conn, seed_images()[0].name)
    assert seed is not None and seed.status == "active" and seed.checksum
    volume = volumes.create_volume(conn, name="from-image", size=8, image_id=seed.id)
    run_until(sim, lambda: volumes.get_volume(conn, volume.id).status == "available")
    server = compute.create_server(
        conn, name="user", flavor_id="2", networks="none",
        block_device_mapping=[{"boot_index": 0, "uuid": volume.id, "source_type": "volume",
                               "destination_type": "volume", "device_type": "disk"}])
    run_until(sim, lambda: volumes.get_volume(conn, volume.id).status == "in-use")
    found = volumes.get_volume(conn, volume.id)
    assert found.source_image_id == seed.id
    assert found.attached_to == (server.id,)
    assert [v.id for v in volumes.volumes(conn, name="from-image")] == [volume.id]


def test_image_updates_tags_and_members(sim: Any, conn: Any) -> None:
    image = images.create_image(conn, name="typed-image", disk_format="raw",
                                properties={"osbuild_role": "probe"})
    images.put_data(conn, image.id, b"\0" * 1024)
    run_until(sim, lambda: images.get_image(conn, image.id).status == "active")
    images.add_tag(conn, image.id, "osbuild")
    updated = images.update_image(conn, image.id, is_hidden=True, visibility="shared")
    assert updated.hidden and updated.visibility == "shared"
    assert updated.properties["osbuild_role"] == "probe"
    assert "osbuild" in updated.tags
    assert images.add_member(conn, image.id, "other-project") is True
    assert images.add_member(conn, image.id, "other-project") is False  # already a member
    assert [i.id for i in images.images(conn, name="typed-image", is_hidden=True)] == [image.id]


def test_an_image_read_that_fails_is_an_error_not_properties(sim: Any, conn: Any) -> None:
    # The raw GET custom_properties makes does not raise by itself: a 500's body ("code",
    # "title", "message") once read as the image's properties, which publish then removed.
    seed = images.find_image(conn, seed_images()[0].name)
    assert seed is not None
    assert "code" not in custom_properties(conn, seed.id)
    sim.faults.add_rule(service="image", method="GET", path="/v2/images/[0-9a-f-]+$",
                        error=500, times=1)
    with pytest.raises(sdk_exc.HttpException):
        custom_properties(conn, seed.id, call=lambda fn: fn())
    # With the default call, a transient 500 is retried and the real properties come back.
    sim.faults.add_rule(service="image", method="GET", path="/v2/images/[0-9a-f-]+$",
                        error=500, times=1)
    assert "code" not in custom_properties(conn, seed.id)
