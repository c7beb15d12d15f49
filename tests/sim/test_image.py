"""Glance through openstacksdk: upload with format inspection, properties, tags, members."""

from __future__ import annotations

import io
from typing import Any

import pycdlib
import pytest
import requests
from openstack import exceptions


def _iso_bytes() -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="TEST")
    iso.add_fp(io.BytesIO(b"hello"), 5, "/HELLO.TXT;1")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def test_seeded_images_are_public_active_and_flagged(sim: Any, conn: Any) -> None:
    names = {i.name for i in conn.image.images()}
    assert {"windows-server-2022-x64.iso", "virtio-win.iso",
            "windows-server-2025-x64-noprompt.iso"} <= names
    resources = {i["name"]: i for i in sim.resources()["images"]}
    assert resources["virtio-win.iso"]["seeded"] is True
    image = conn.image.find_image("windows-server-2025-x64-noprompt.iso")
    assert image.status == "active" and image.visibility == "public"
    assert image.properties["osbuild_uefi_noprompt"] == "true"


def test_iso_upload_with_properties_and_tags_becomes_active(conn: Any) -> None:
    data = _iso_bytes()
    image = conn.image.create_image(
        name="osbuild-x-config", data=data, disk_format="iso", container_format="bare",
        allow_duplicates=True, tags=["osbuild"], visibility="private",
        meta={"os_hidden": True}, osbuild_role="config")
    fetched = conn.image.get_image(image.id)
    assert fetched.status == "active"
    assert fetched.size == len(data)
    assert fetched.tags == ["osbuild"]
    assert fetched.is_hidden is True
    assert fetched.properties["osbuild_role"] == "config"
    assert conn.image.download_image(fetched).content == data
    streamed = conn.image.download_image(fetched, stream=True)
    assert b"".join(streamed.iter_content(4096)) == data
    # os_hidden images leave default listings but can still be asked for
    assert image.id not in {i.id for i in conn.image.images()}
    assert image.id in {i.id for i in conn.image.images(is_hidden=True)}
    assert [i.id for i in conn.image.images(tag="osbuild", is_hidden=True)] == [image.id]


def test_every_page_of_a_filtered_listing_keeps_the_filters(sim: Any, conn: Any) -> None:
    # seen in glance/api/v2/images.py ResponseSerializer.index: the next link is the
    # request's query with the marker replaced (the sim's dropped the filters, so page two
    # listed every image); ImagesController.index links a next page to every full page.
    tagged = {conn.image.create_image(name=f"t{n}", disk_format="raw", container_format="bare",
                                      tags=["osbuild"]).id for n in range(3)}
    conn.image.create_image(name="untagged", disk_format="raw", container_format="bare")
    assert {i.id for i in conn.image.images(tag="osbuild", limit=2)} == tagged
    first = conn.image.get("/images?tag=osbuild&limit=2").json()
    assert first["first"] == "/v2/images?tag=osbuild&limit=2"
    marker = first["images"][-1]["id"]
    assert first["next"] == f"/v2/images?tag=osbuild&limit=2&marker={marker}"
    last = conn.image.get(f"/images?tag=osbuild&limit=2&marker={marker}").json()
    assert len(last["images"]) == 1 and "next" not in last


def test_is_hidden_as_a_keyword_is_sent_as_a_string_and_glance_refuses_it(conn: Any) -> None:
    # openstacksdk turns extra keywords into string properties: os_hidden="True".
    with pytest.raises(exceptions.BadRequestException, match="is not of type 'boolean'"):
        conn.image.create_image(name="hidden", data=_iso_bytes(), disk_format="iso",
                                container_format="bare", allow_duplicates=True, is_hidden=True)


def test_bytes_that_are_not_an_iso_get_415_and_the_image_stays_queued(
    sim: Any, conn: Any
) -> None:
    with pytest.raises(exceptions.HttpException) as err:
        conn.image.create_image(name="junk", data=b"\0" * 40000, disk_format="iso",
                                container_format="bare", allow_duplicates=True)
    assert err.value.status_code == 415
    # openstacksdk deletes the failed image itself; check the state Glance left it in first
    token = conn.session.get_token()
    created = requests.post(f"{sim.base_url}/image/v2/images", timeout=10,
                            json={"name": "junk2", "disk_format": "iso",
                                  "container_format": "bare"},
                            headers={"X-Auth-Token": token}).json()
    put = requests.put(f"{sim.base_url}/image/v2/images/{created['id']}/file", data=b"x" * 40000,
                       headers={"X-Auth-Token": token,
                                "Content-Type": "application/octet-stream"}, timeout=10)
    assert put.status_code == 415
    assert conn.image.get_image(created["id"]).status == "queued"


def test_upload_from_a_file_object(conn: Any, tmp_path: Any) -> None:
    data = _iso_bytes()
    path = tmp_path / "config.iso"
    path.write_bytes(data)
    with path.open("rb") as handle:
        from_file = conn.image.create_image(name="from-file", data=handle, disk_format="iso",
                                            container_format="bare", allow_duplicates=True)
    from_stream = conn.image.create_image(name="from-stream", data=io.BytesIO(data),
                                          disk_format="iso", container_format="bare",
                                          allow_duplicates=True)
    for image in (from_file, from_stream):
        assert conn.image.get_image(image.id).size == len(data)
        assert conn.image.download_image(image).content == data


def test_update_tags_protected_and_delete(conn: Any) -> None:
    image = conn.image.create_image(name="raw", data=b"disk", disk_format="raw",
                                    container_format="bare", allow_duplicates=True)
    conn.image.update_image(image, name="renamed", osbuild_family="fam", protected=True)
    conn.image.add_tag(image, "osbuild-current")
    fetched = conn.image.get_image(image.id)
    assert fetched.name == "renamed" and fetched.is_protected is True
    assert fetched.properties["osbuild_family"] == "fam"
    assert "osbuild-current" in fetched.tags
    # Glance filters on any property; openstacksdk's images() drops unknown keys, so ask raw.
    listed = conn.image.get("/images", params={"osbuild_family": "fam"}).json()["images"]
    assert [i["id"] for i in listed] == [image.id]
    with pytest.raises(exceptions.ForbiddenException, match="is protected"):
        conn.image.delete_image(image, ignore_missing=False)
    conn.image.remove_tag(image, "osbuild-current")
    conn.image.update_image(image, protected=False)
    conn.image.delete_image(image, ignore_missing=False)
    assert conn.image.find_image(image.id) is None


def test_read_only_attributes_are_403(conn: Any) -> None:
    image = conn.image.create_image(name="ro", data=b"d", disk_format="raw",
                                    container_format="bare", allow_duplicates=True)
    with pytest.raises(exceptions.ForbiddenException, match="read-only"):
        conn.image.update_image(image, status="active")


def test_members_of_a_shared_image(conn: Any) -> None:
    image = conn.image.create_image(name="shared", data=b"d", disk_format="raw",
                                    container_format="bare", allow_duplicates=True,
                                    visibility="shared")
    conn.image.add_member(image, member_id="other-project")
    members = list(conn.image.members(image))
    assert [(m.member_id, m.status) for m in members] == [("other-project", "pending")]
    conn.image.update_member("other-project", image, status="accepted")
    assert conn.image.get_member("other-project", image).status == "accepted"
    conn.image.remove_member("other-project", image)
    assert list(conn.image.members(image)) == []


def test_image_count_quota_is_413(sim: Any, conn: Any) -> None:
    sim.faults.set_quota("image", image_count_total=1)
    conn.image.create_image(name="one", data=b"d", disk_format="raw", container_format="bare",
                            allow_duplicates=True)
    with pytest.raises(exceptions.HttpException) as err:
        conn.image.create_image(name="two", data=b"d", disk_format="raw",
                                container_format="bare", allow_duplicates=True)
    assert err.value.status_code == 413
    assert "image_count_total is over limit of 1" in str(err.value)


def test_a_failed_direct_upload_leaves_the_image_queued_for_another_try(
    sim: Any, conn: Any
) -> None:
    # glance/api/v2/image_data.py ImageDataController.upload: every failure _restore()s
    # the image to queued (the simulator used to leave it killed, which real Glance no
    # longer does); the same PUT can then be repeated.
    sim.faults.add_scenario("image_killed", name="^doomed$", times=1)
    token = conn.session.get_token()
    created = requests.post(f"{sim.base_url}/image/v2/images", timeout=10,
                            json={"name": "doomed", "disk_format": "raw",
                                  "container_format": "bare"},
                            headers={"X-Auth-Token": token}).json()
    put = requests.put(f"{sim.base_url}/image/v2/images/{created['id']}/file", data=b"bytes",
                       headers={"X-Auth-Token": token,
                                "Content-Type": "application/octet-stream"}, timeout=10)
    assert put.status_code == 500
    assert conn.image.get_image(created["id"]).status == "queued"
    again = requests.put(f"{sim.base_url}/image/v2/images/{created['id']}/file", data=b"bytes",
                         headers={"X-Auth-Token": token,
                                  "Content-Type": "application/octet-stream"}, timeout=10)
    assert again.status_code == 204
    assert conn.image.get_image(created["id"]).status == "active"


def test_only_the_admin_makes_an_image_public(sim: Any, conn: Any) -> None:
    """glance/policies/image.py: ``publicize_image`` is ADMIN, ``communitize_image`` the
    owner's; glance/api/policy.py ``_enforce_image_visibility`` checks them at create and at
    a visibility change (glance/api/v2/policy.py ``add_image``, ``update_property``), 403
    "You are not authorized to complete publicize_image action.". Seen on real Glance 33:
    a member's build with image.visibility public failed at promote."""
    refused = "You are not authorized to complete publicize_image action."
    with pytest.raises(exceptions.ForbiddenException, match=refused):
        conn.image.create_image(name="mine", visibility="public", disk_format="raw",
                                container_format="bare", allow_duplicates=True)
    image = conn.image.create_image(name="mine", disk_format="raw", container_format="bare",
                                    allow_duplicates=True)
    with pytest.raises(exceptions.ForbiddenException, match=refused):
        conn.image.update_image(image, visibility="public")
    assert conn.image.update_image(image, visibility="community").visibility == "community"
    admin = sim.connect(admin=True)
    assert admin.image.update_image(image.id, visibility="public").visibility == "public"


def test_a_deactivated_image_serves_no_data_to_a_member(sim: Any, conn: Any) -> None:
    """glance/api/v2/image_actions.py ``deactivate``/``reactivate`` (204; policies
    ADMIN_OR_PROJECT_MEMBER, glance/policies/image.py; only an active image can be
    deactivated, glance/domain/__init__.py), and image_data.py ``download``: 403 for a
    non-admin while deactivated. Seen on real Glance 33: a deactivated ISO showed
    ``deactivated`` to the member; the simulator ignored the action and kept it active."""
    admin = sim.connect(admin=True)
    # Made once: pycdlib stamps the ISO with the time, and a second call a second later
    # differs (the test failed when the two fell on either side of a second).
    iso = _iso_bytes()
    image = conn.image.create_image(name="mine.iso", data=iso, disk_format="iso",
                                    container_format="bare", allow_duplicates=True)
    before = conn.image.get_image(image.id)
    conn.image.deactivate_image(image)
    after = conn.image.get_image(image.id)
    assert after.status == "deactivated"
    # The record keeps what the upload stored (tests/functional/test_real_services.py
    # test_a_deactivated_image_keeps_its_checksum_on_real_glance): --refresh auto compares
    # a deactivated ISO's checksum, which the simulator had dropped ("inputs changed").
    assert (after.checksum, after.hash_value, after.size) == (
        before.checksum, before.hash_value, before.size) != (None, None, None)
    data = conn.image.get(f"/images/{image.id}/file", raise_exc=False)
    assert data.status_code == 403
    assert "The requested image has been deactivated. Image data download is forbidden." in (
        data.text)
    assert admin.image.get(f"/images/{image.id}/file").content == iso
    conn.image.reactivate_image(image)
    assert conn.image.get_image(image.id).status == "active"
    # (openstacksdk's deactivate_image does not raise on an error answer: ask directly)
    seeded = conn.image.find_image("virtio-win.iso")  # not the member's project's image
    refused = conn.image.post(f"/images/{seeded.id}/actions/deactivate", raise_exc=False)
    assert refused.status_code == 403
    queued = conn.image.create_image(name="empty", disk_format="raw", container_format="bare",
                                     allow_duplicates=True)
    refused = conn.image.post(f"/images/{queued.id}/actions/deactivate", raise_exc=False)
    assert refused.status_code == 403
    assert "Not allowed to deactivate image in status 'queued'" in refused.text
