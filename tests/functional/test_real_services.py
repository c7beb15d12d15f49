"""The launcher against real Keystone and Glance: auth variants, catalog, Glance inspection."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pycdlib
import pytest
from openstack import exceptions as sdk_exc

from tests.support.realservices import RealServices, RealServicesError


def _tiny_iso() -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3)
    data = b"functional\n"
    iso.add_fp(io.BytesIO(data), len(data), "/F.TXT;1", joliet_path="/f.txt")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def test_catalog_lists_glance_at_its_url(real_services: RealServices) -> None:
    conn = real_services.connect()
    assert conn.image.get_endpoint().rstrip("/").startswith(real_services.glance_url)
    services = {s.type: s for s in conn.identity.services()}
    assert {"identity", "image"} <= set(services)
    urls = {e.interface: e.url for e in conn.identity.endpoints(service_id=services["image"].id)}
    assert urls == dict.fromkeys(("public", "internal", "admin"), real_services.glance_url)


def test_password_auth_scopes_project_by_name_and_by_id(real_services: RealServices) -> None:
    who = real_services.create_project_user("proj-pw", "user-pw")
    by_name = real_services.connect(who.auth(real_services.auth_url))
    by_id = real_services.connect(who.auth(real_services.auth_url, by_id=True))
    assert by_name.current_project_id == who.project_id
    assert by_id.current_project_id == who.project_id
    assert by_name.current_user_id == who.user_id
    # Both scopes reach Glance through keystonemiddleware.
    assert list(by_name.image.images(limit=1)) is not None
    assert list(by_id.image.images(limit=1)) is not None


def test_application_credential_auth(real_services: RealServices) -> None:
    who = real_services.create_project_user("proj-ac", "user-ac")
    cred = real_services.create_application_credential(who, "osbuild-ci")
    conn = real_services.connect(cred.auth(real_services.auth_url))
    assert conn.current_project_id == who.project_id
    assert conn.current_user_id == who.user_id
    image = conn.image.create_image(
        name="ac-probe",
        data=_tiny_iso(),
        disk_format="iso",
        container_format="bare",
        allow_duplicates=True,
    )
    try:
        assert conn.image.wait_for_status(image, "active", failures=["killed"], wait=60).owner == (
            who.project_id
        )
    finally:
        conn.image.delete_image(image)


def test_wrong_password_is_refused(real_services: RealServices) -> None:
    who = real_services.create_project_user("proj-bad", "user-bad")
    auth = {**who.auth(real_services.auth_url), "password": "not-the-password"}
    with pytest.raises(sdk_exc.SDKException, match=r"requires authentication.*HTTP 401"):
        real_services.connect(auth).authorize()


def test_glance_inspects_uploads_against_disk_format(real_services: RealServices) -> None:
    conn = real_services.connect()
    good = conn.image.create_image(
        name="iso-ok",
        data=_tiny_iso(),
        disk_format="iso",
        container_format="bare",
        allow_duplicates=True,
    )
    bad = conn.image.create_image(
        name="iso-bad", disk_format="iso", container_format="bare", allow_duplicates=True
    )
    try:
        assert conn.image.wait_for_status(good, "active", failures=["killed"], wait=60)
        resp = conn.image.put(
            f"/images/{bad.id}/file",
            data=os.urandom(64 * 1024),
            headers={"Content-Type": "application/octet-stream"},
            raise_exc=False,
        )
        assert resp.status_code == 415, resp.text
        assert conn.image.get_image(bad.id).status == "queued"
    finally:
        conn.image.delete_image(good)
        conn.image.delete_image(bad)


def test_service_that_does_not_come_up_is_reported_with_its_log(tmp_path: Path) -> None:
    rs = RealServices(tmp_path, keystone_app="osbuild_no_such_module:application")
    with pytest.raises(RealServicesError) as err:
        rs.start()
    message = str(err.value)
    assert message.startswith("keystone exited with status")
    assert "keystone.log" in message
    assert "osbuild_no_such_module" in message  # the log tail explains why
    assert rs.keystone is not None and not rs.keystone.running()


def test_teardown_stops_both_services(tmp_path: Path) -> None:
    with RealServices(tmp_path) as rs:
        ports = [urlparse(rs.auth_url).port, urlparse(rs.glance_url).port]
        procs = [rs.keystone.process, rs.glance.process]  # type: ignore[union-attr]
    assert all(p is not None and p.poll() is not None for p in procs)
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert (tmp_path / "logs" / "keystone.log").stat().st_size > 0
    assert (tmp_path / "logs" / "glance.log").stat().st_size > 0


def test_admin_password_starting_with_a_dash_bootstraps(tmp_path: Path) -> None:
    # secrets.token_urlsafe() starts with "-" about one time in 64.
    password = "-" + "x" * 23
    with RealServices(tmp_path, admin_password=password) as rs:
        assert rs.connect().session.get_token()
    log = (tmp_path / "logs" / "keystone.log").read_text()
    assert password not in log


def test_a_rollback_mark_on_real_glance_is_set_passed_over_and_taken_back(
        real_services: RealServices) -> None:
    # osbuild_rolled_back_at is set to a time and cleared to "" by a property update:
    # real Glance must take both, and a later rollback must pass over the marked image.
    from osbuild import naming
    from osbuild.images.family import list_family
    from osbuild.images.manage import mark_current, promote, rollback

    conn = real_services.connect()
    family = "fn-rollback"
    made = []
    try:
        for version in ("20261101t000000-00000a", "20261102t000000-00000b",
                        "20261103t000000-00000c"):
            image = conn.image.create_image(
                name=f"{family}-{version}", data=_tiny_iso(), disk_format="iso",
                container_format="bare", allow_duplicates=True,
                **{naming.PROP_FAMILY: family, naming.PROP_IMAGE_VERSION: version,
                   naming.PROP_BUILD_ID: version, naming.PROP_VERIFY: "passed"})
            conn.image.wait_for_status(image, "active", failures=["killed"], wait=60)
            conn.image.add_tag(image, naming.TAG)
            made.append(image.id)
        first, rejected, third = made
        mark_current(conn, rejected, family)
        assert rollback(conn, family).image.id == first
        mark_current(conn, third, family)
        done = rollback(conn, family)
        assert done.image.id == first and [i.id for i in done.passed_over] == [rejected]
        marked = {i.id: i.rolled_back_at for i in list_family(conn, family, with_usage=False)}
        assert marked[rejected] and marked[third] and marked[first] is None
        assert promote(conn, rejected).rolled_back_at is None
        assert conn.image.get_image(rejected).properties[naming.PROP_ROLLED_BACK] == ""
    finally:
        for image_id in made:
            conn.image.delete_image(image_id, ignore_missing=True)


def test_a_deactivated_image_keeps_its_checksum_on_real_glance(
        real_services: RealServices) -> None:
    # Deactivation refuses the data (403 on download), not the record: its checksum and
    # hash stay readable, so --refresh auto still compares an ISO an admin deactivated
    # (the simulator had dropped them, and read the ISO as changed). osbuild_sim's Glance
    # rests on this test (tests/sim/test_image.py).
    conn = real_services.connect()
    image = conn.image.create_image(name="iso-deactivated", data=_tiny_iso(),
                                    disk_format="iso", container_format="bare",
                                    allow_duplicates=True)
    try:
        conn.image.wait_for_status(image, "active", failures=["killed"], wait=60)
        before = conn.image.get_image(image.id)
        conn.image.deactivate_image(image)
        after = conn.image.get_image(image.id)
        assert after.status == "deactivated"
        assert (after.checksum, after.hash_value, after.size) == (
            before.checksum, before.hash_value, before.size)
        assert after.checksum and after.hash_value
    finally:
        conn.image.reactivate_image(image)
        conn.image.delete_image(image)
