"""Real Cinder/Glance behaviour the simulated block storage learnt, each from where it was seen.

"seen" names the real-service probe in tests/functional/test_real_cinder.py (Cinder 29,
Glance 33) and the upstream code that explains it; every test here failed on the simulator
before it learnt the behaviour.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from openstack import exceptions

from osbuild_sim.storage import UPLOAD_SECONDS_PER_GB, UPLOAD_START_SECONDS
from osbuild_sim.world import PROJECT_ID
from tests.sim.conftest import run_until, volume_status


def _available_from_image(sim: Any, conn: Any, name: str) -> Any:
    image = conn.image.find_image("virtio-win.iso", ignore_missing=False)
    volume = conn.block_storage.create_volume(size=1, image_id=image.id, name=name)
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    return conn.block_storage.get_volume(volume.id)


def test_a_volume_from_an_unsigned_image_records_signature_verified_false(
    sim: Any, conn: Any
) -> None:
    # seen: test_upload_to_image_statuses_and_the_image_it_makes; Cinder's
    # verify_glance_signatures defaults to enabled (cinder/image/glance.py) and
    # cinder/volume/flows/manager/create_volume.py stores the verdict for the volume.
    volume = _available_from_image(sim, conn, "iso")
    assert volume.volume_image_metadata["signature_verified"] == "False"


def test_upload_to_image_image_active_first_then_volume_available(sim: Any, conn: Any) -> None:
    # seen: test_upload_to_image_statuses_and_the_image_it_makes (volume uploading; image
    # queued, saving, active while the volume still says uploading; then available):
    # cinder/volume/manager.py copy_volume_to_image resets the volume status in its
    # `finally`, after the upload to Glance has returned.
    volume = _available_from_image(sim, conn, "iso")
    conn.block_storage.set_volume_image_metadata(volume, os_type="windows")
    image_id = conn.block_storage.upload_volume_to_image(
        volume, "from-volume", disk_format="raw", container_format="bare")["image_id"]
    seen = [(volume_status(conn, volume.id), conn.image.get_image(image_id).status)]
    for _ in range(200):
        sim.advance(0.5)
        now = (volume_status(conn, volume.id), conn.image.get_image(image_id).status)
        if now != seen[-1]:
            seen.append(now)
        if now == ("available", "active"):
            break
    assert seen == [("uploading", "queued"), ("uploading", "saving"),
                    ("uploading", "active"), ("available", "active")]


def test_an_image_from_a_volume_has_min_disk_0_whole_raw_size_and_no_reserved_keys(
    sim: Any, conn: Any
) -> None:
    # seen: test_upload_to_image_statuses_and_the_image_it_makes: min_disk 0 (Cinder sends
    # Glance only name, formats, visibility, protected: cinder/api/contrib/volume_actions.py
    # _volume_upload_image), size the whole 1 GiB raw volume, the volume's image metadata
    # as properties less glance_core_properties and the reserved namespaces
    # (cinder/image/image_utils.py GLANCE_RESERVED_NAMESPACES: os_glance, img_signature,
    # signature_verified).
    volume = _available_from_image(sim, conn, "iso")
    conn.block_storage.set_volume_image_metadata(
        volume, os_type="windows", os_glance_importing_to_stores="fs",
        img_signature="abc")
    image_id = conn.block_storage.upload_volume_to_image(
        volume, "from-volume", disk_format="raw", container_format="bare")["image_id"]
    sim.advance(UPLOAD_START_SECONDS + UPLOAD_SECONDS_PER_GB + 2)
    raw = conn.image.get(f"/images/{image_id}").json()
    assert raw["status"] == "active"
    assert raw["min_disk"] == 0
    assert raw["size"] == 1024**3 and raw["virtual_size"] == 1024**3
    assert raw["os_type"] == "windows"
    for absent in ("signature_verified", "img_signature", "os_glance_importing_to_stores",
                   "image_id", "image_name"):
        assert absent not in raw


def test_upload_of_an_in_use_volume_is_refused_even_with_force(sim: Any, conn: Any) -> None:
    # seen in cinder/volume/api.py API.copy_volume_to_image: enable_force_upload defaults
    # to False and then force is ignored; the only status accepted is available.
    volume = conn.block_storage.create_volume(size=1, name="target")
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    sim.world.volumes[volume.id].status = "in-use"
    resp = conn.block_storage.post(
        f"/volumes/{volume.id}/action", microversion="3.1", raise_exc=False,
        json={"os-volume_upload_image": {"image_name": "x", "force": True}})
    assert resp.status_code == 400
    assert resp.json()["badRequest"]["message"] == (
        f"Invalid volume: Volume {volume.id} status must be available")
    assert not [i for i in conn.image.images() if i.name == "x"]


@pytest.mark.parametrize("version", ["3.0", "3.70"])
def test_a_member_sees_no_admin_only_volume_fields(conn: Any, version: str) -> None:
    # seen: test_a_member_sees_no_admin_fields_and_attachments_need_3_27; policy in
    # cinder/policies/volumes.py (host and migration attributes: RULE_ADMIN_API, tenant:
    # project reader) and cinder/api/v3/views/volumes.py (is_admin for the rest).
    volume = conn.block_storage.create_volume(size=1, name="fields")
    body = conn.block_storage.get(f"/volumes/{volume.id}", microversion=version).json()
    body = body["volume"]
    assert body["os-vol-tenant-attr:tenant_id"] == PROJECT_ID
    for admin_only in ("os-vol-host-attr:host", "os-vol-mig-status-attr:migstat",
                       "os-vol-mig-status-attr:name_id", "migration_status", "provider_id",
                       "cluster_name"):
        assert admin_only not in body
    # The sim's one user is a project member, as osbuild's users are on a real cloud.
    assert sorted(conn.session.auth.get_access(conn.session).role_names) == ["member", "reader"]


def test_an_admin_token_sees_the_admin_fields(sim: Any, conn: Any) -> None:
    volume = conn.block_storage.create_volume(size=1, name="fields")
    admin_token = sim.connect(admin=True).auth_token  # the cloud's admin
    body = requests.get(f"{sim.base_url}/volume/v3/volumes/{volume.id}", timeout=10,
                        headers={"X-Auth-Token": admin_token,
                                 "OpenStack-API-Version": "volume 3.70"}).json()["volume"]
    assert {"os-vol-host-attr:host", "os-vol-mig-status-attr:migstat", "migration_status",
            "provider_id", "cluster_name"} <= set(body)


def test_a_member_may_not_reset_a_volume_status(sim: Any, conn: Any) -> None:
    # os-reset_status is an admin action (cinder/policies/volume_actions.py); the sim's
    # user is a member, so a volume stuck uploading stays for an operator.
    volume = conn.block_storage.create_volume(size=1, name="stuck")
    resp = conn.block_storage.post(f"/volumes/{volume.id}/action", raise_exc=False,
                                   json={"os-reset_status": {"status": "available"}})
    assert resp.status_code == 403


def test_attachments_api_exists_from_3_27(sim: Any, conn: Any, boot_blank: Any) -> None:
    # seen: test_a_member_sees_no_admin_fields_and_attachments_need_3_27 (404 with
    # webob's text at 3.0; a listing at 3.27): cinder/api/v3/attachments.py, NEW_ATTACH.
    old = conn.block_storage.get("/attachments", microversion="3.0", raise_exc=False)
    assert old.status_code == 404
    assert old.json() == {"itemNotFound": {"code": 404,
                                           "message": "The resource could not be found."}}
    assert conn.block_storage.get("/attachments", microversion="3.27").json() == {
        "attachments": []}
    server = boot_blank()
    listed = conn.block_storage.get("/attachments", microversion="3.27").json()["attachments"]
    assert [(a["instance"], a["status"]) for a in listed] == [(server.id, "attached")]
    one = conn.block_storage.get(f"/attachments/{listed[0]['id']}",
                                 microversion="3.27").json()["attachment"]
    assert one["volume_id"] == listed[0]["volume_id"] and one["attach_mode"] == "rw"


def test_urls_work_with_and_without_the_project_and_refuse_a_foreign_one(
    sim: Any, conn: Any
) -> None:
    # seen: test_urls_with_and_without_the_project_and_a_foreign_project; the router maps
    # both (cinder/api/v3/router.py) and a URL project that is not the token's is
    # "Malformed request url" (cinder/api/openstack/wsgi.py Resource._process_stack).
    conn.block_storage.create_volume(size=1, name="listed")
    headers = {"X-Auth-Token": conn.session.get_token()}
    base = f"{sim.base_url}/volume/v3"
    with_project = requests.get(f"{base}/{PROJECT_ID}/volumes", headers=headers, timeout=10)
    without = requests.get(f"{base}/volumes", headers=headers, timeout=10)
    assert with_project.status_code == without.status_code == 200
    assert with_project.json()["volumes"][0]["name"] == "listed"
    assert [v["id"] for v in without.json()["volumes"]] == [
        v["id"] for v in with_project.json()["volumes"]]
    foreign = requests.get(f"{base}/{'f' * 32}/volumes", headers=headers, timeout=10)
    assert foreign.status_code == 400
    assert foreign.json() == {"badRequest": {"code": 400, "message": "Malformed request url"}}


def test_over_quota_is_413_with_retry_after_0_in_header_and_body(sim: Any, conn: Any) -> None:
    # seen: test_over_quota_answer_shape; cinder/exception.py QuotaError (413, headers
    # Retry-After: 0), cinder/api/middleware/fault.py ("<Exception>: <message>"),
    # cinder/api/openstack/wsgi.py Fault (retryAfter in the body of a 413).
    sim.faults.set_quota("volume", volumes=1, gigabytes=3)
    conn.block_storage.create_volume(size=2, name="one")
    count = conn.block_storage.post("/volumes", json={"volume": {"size": 1, "name": "two"}},
                                    raise_exc=False)
    assert count.status_code == 413
    assert count.headers["Retry-After"] == "0"
    assert count.json() == {"overLimit": {
        "code": 413, "retryAfter": "0",
        "message": "VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded "
                   "for quota 'volumes'."}}
    sim.faults.set_quota("volume", volumes=5)
    size = conn.block_storage.post("/volumes", json={"volume": {"size": 2, "name": "two"}},
                                   raise_exc=False)
    assert size.status_code == 413
    assert size.json()["overLimit"]["message"] == (
        "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
        "gigabytes quota. Requested 2G, quota is 3G and 2G has been consumed.")
    with pytest.raises(exceptions.HttpException):
        conn.block_storage.create_volume(size=2, name="three")


def test_quota_set_has_cinders_keys_and_only_the_own_project(sim: Any, conn: Any) -> None:
    # seen: test_over_quota_answer_shape printed the quota set with usage: these keys,
    # each {limit, in_use, reserved}; cinder/api/contrib/quotas.py authorizes show against
    # the target project, update is admin-only (cinder/policies/quotas.py).
    conn.block_storage.create_volume(size=2, name="counted")
    body = conn.block_storage.get(f"/os-quota-sets/{PROJECT_ID}?usage=True").json()
    quota = body["quota_set"]
    assert set(quota) == {"id", "volumes", "per_volume_gigabytes", "snapshots", "gigabytes",
                          "backups", "backup_gigabytes", "volumes___DEFAULT__",
                          "gigabytes___DEFAULT__", "snapshots___DEFAULT__", "groups"}
    assert quota["id"] == PROJECT_ID
    assert quota["gigabytes"] == {"limit": 1000, "in_use": 2, "reserved": 0}
    assert quota["volumes___DEFAULT__"] == {"limit": -1, "in_use": 1, "reserved": 0}
    plain = conn.block_storage.get(f"/os-quota-sets/{PROJECT_ID}").json()["quota_set"]
    assert plain["volumes"] == 10 and plain["per_volume_gigabytes"] == -1
    other = conn.block_storage.get(f"/os-quota-sets/{'e' * 32}", raise_exc=False)
    assert other.status_code == 403
    update = conn.block_storage.put(f"/os-quota-sets/{PROJECT_ID}", raise_exc=False,
                                    json={"quota_set": {"volumes": 100}})
    assert update.status_code == 403
    assert "volume_extension:quotas:update" in update.json()["forbidden"]["message"]


def test_the_admin_sets_a_projects_quota_and_cinder_enforces_it(sim: Any, conn: Any) -> None:
    """cinder/policies/quotas.py: UPDATE_POLICY is RULE_ADMIN_API; cinder/api/contrib/
    quotas.py ``update`` refuses a limit below the usage (``_validate_existing_resource``,
    -1 always allowed) and answers the project's limits. Seen: the real stack's admin set a
    project's gigabytes to 30 (``block_storage.update_quota_set``) and osbuild's preflight
    refused the build; the simulator's admin got 403."""
    admin = sim.connect(admin=True)
    conn.block_storage.create_volume(size=2, name="counted")
    below = admin.block_storage.put(f"/os-quota-sets/{PROJECT_ID}", raise_exc=False,
                                    json={"quota_set": {"gigabytes": 1}})
    assert below.status_code == 400
    assert below.json()["badRequest"]["message"] == (
        "Quota gigabytes limit must be equal or greater than existing resources. Current "
        "usage is 2 and the requested limit is 1.")
    admin.block_storage.update_quota_set(PROJECT_ID, gigabytes=3, volumes=-1)
    assert admin.block_storage.get_quota_set(PROJECT_ID).gigabytes == 3
    seen = conn.block_storage.get(f"/os-quota-sets/{PROJECT_ID}").json()["quota_set"]
    assert (seen["gigabytes"], seen["volumes"]) == (3, -1)
    with pytest.raises(exceptions.HttpException, match="gigabytes quota"):
        conn.block_storage.create_volume(size=2, name="over")


# Keys of a blank volume as a member sees it, printed by
# test_a_member_sees_no_admin_fields_and_attachments_need_3_27 against real Cinder 29.
_REAL_KEYS_3_0 = {
    "attachments", "availability_zone", "bootable", "consistencygroup_id", "created_at",
    "description", "encrypted", "id", "links", "metadata", "multiattach", "name",
    "os-vol-tenant-attr:tenant_id", "replication_status", "size", "snapshot_id",
    "source_volid", "status", "updated_at", "user_id", "volume_type"}
_REAL_KEYS_3_70 = _REAL_KEYS_3_0 | {
    "consumes_quota", "group_id", "service_uuid", "shared_targets", "volume_type_id"}


@pytest.mark.parametrize(("version", "keys"), [("3.0", _REAL_KEYS_3_0),
                                                ("3.70", _REAL_KEYS_3_70)])
def test_a_blank_volume_has_exactly_real_cinders_keys(
    conn: Any, version: str, keys: set[str]
) -> None:
    volume = conn.block_storage.create_volume(size=1, name="keys")
    body = conn.block_storage.get(f"/volumes/{volume.id}", microversion=version).json()
    assert set(body["volume"]) == keys
