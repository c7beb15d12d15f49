"""What `openstack` client users try first answers in the simulated cloud (through the SDK
calls the client makes): the admin views to the cloud's admin only, as real policy has it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests
import yaml
from openstack import exceptions as sdk_exc


@pytest.fixture
def admin(sim: Any) -> Any:
    """The cloud's admin (clouds.yaml's osbuild-sim-admin)."""
    return sim.connect(admin=True)


def test_availability_zones_of_every_service(conn: Any, admin: Any) -> None:
    # `availability zone list` (no --long) is anyone's (os-availability-zone:list is "@")
    assert [z.name for z in conn.compute.availability_zones()] == ["nova"]
    compute = list(admin.compute.availability_zones(details=True))
    assert [z.name for z in compute if z.name != "internal"] == ["nova"]
    nova = next(z for z in compute if z.name == "nova")
    assert "sim-compute-1" in nova.hosts
    assert [z.name for z in conn.block_storage.availability_zones()] == ["nova"]
    assert {z.name for z in conn.network.availability_zones()} == {"nova"}


def test_hypervisors_list_and_show(admin: Any) -> None:
    [brief] = list(admin.compute.hypervisors())
    assert brief.name == "sim-compute-1" and brief.state == "up"
    [detail] = list(admin.compute.hypervisors(details=True))
    assert detail.hypervisor_type == "QEMU"
    assert admin.compute.get_hypervisor(brief.id).name == "sim-compute-1"
    assert list(admin.compute.aggregates()) == []  # `hypervisor show` lists them


def test_compute_services(admin: Any) -> None:
    services = {(s.binary, s.host, s.state) for s in admin.compute.services()}
    assert ("nova-compute", "sim-compute-1", "up") in services


def test_identity_services_endpoints_and_users(conn: Any, admin: Any) -> None:
    types = {s.type for s in admin.identity.services()}
    assert {"identity", "compute", "image", "network", "block-storage"} <= types
    assert any(e.interface == "public" for e in admin.identity.endpoints())
    users = {u.name: u.id for u in admin.identity.users()}
    assert set(users) == {"admin", "sim-admin"}
    assert admin.identity.get_user(users["admin"]).name == "admin"
    # identity:get_user: the member sees itself, not the admin
    assert conn.identity.get_user(users["admin"]).name == "admin"
    with pytest.raises(sdk_exc.ForbiddenException):
        conn.identity.get_user(users["sim-admin"])


def test_admin_creates_and_deletes_a_flavor(admin: Any) -> None:
    flavor = admin.compute.create_flavor(name="m1.win", vcpus=4, ram=8192, disk=60)
    assert admin.compute.find_flavor("m1.win").disk == 60
    with pytest.raises(sdk_exc.ConflictException):
        admin.compute.create_flavor(name="m1.win", vcpus=1, ram=512, disk=1)
    admin.compute.delete_flavor(flavor.id)
    assert admin.compute.find_flavor("m1.win") is None


# Nova 34's and Keystone 30's default policies (nova/policies/hypervisors.py, services.py,
# aggregates.py, availability_zone.py, flavor_manage.py: rule:context_is_admin;
# keystone/common/policies/user.py, service.py, endpoint.py: admin, or a reader with system or
# domain scope), and the bodies nova.exception.PolicyNotAuthorized and
# keystone.exception.ForbiddenAction give the 403.
_NOVA = "Policy doesn't allow os_compute_api:{} to be performed."
_KEYSTONE = "You are not authorized to perform the requested action: identity:{}."
REFUSED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "/compute/v2.1/os-hypervisors", _NOVA.format("os-hypervisors:list"), {}),
    ("GET", "/compute/v2.1/os-hypervisors/detail",
     _NOVA.format("os-hypervisors:list-detail"), {}),
    ("GET", "/compute/v2.1/os-services", _NOVA.format("os-services:list"), {}),
    ("GET", "/compute/v2.1/os-aggregates", _NOVA.format("os-aggregates:index"), {}),
    ("GET", "/compute/v2.1/os-availability-zone/detail",
     _NOVA.format("os-availability-zone:detail"), {}),
    ("POST", "/compute/v2.1/flavors", _NOVA.format("os-flavor-manage:create"),
     {"flavor": {"name": "m1.win", "vcpus": 4, "ram": 8192, "disk": 60}}),
    ("DELETE", "/compute/v2.1/flavors/1", _NOVA.format("os-flavor-manage:delete"), {}),
    ("GET", "/identity/v3/users", _KEYSTONE.format("list_users"), {}),
    ("GET", "/identity/v3/services", _KEYSTONE.format("list_services"), {}),
    ("GET", "/identity/v3/endpoints", _KEYSTONE.format("list_endpoints"), {}),
]


@pytest.mark.parametrize(("method", "path", "message", "body"), REFUSED,
                         ids=[f"{m} {p}" for m, p, _, _ in REFUSED])
def test_a_project_member_is_refused_the_admin_views(
        sim: Any, conn: Any, method: str, path: str, message: str, body: dict[str, Any]
) -> None:
    answer = requests.request(method, sim.base_url + path, json=body or None, timeout=10,
                              headers={"X-Auth-Token": conn.auth_token})
    assert answer.status_code == 403
    if path.startswith("/identity"):
        assert answer.json() == {"error": {"code": 403, "message": message,
                                           "title": "Forbidden"}}
    else:
        assert answer.json() == {"forbidden": {"code": 403, "message": message}}
    assert conn.compute.find_flavor("m1.small") is not None  # nothing was deleted


def test_the_sdk_calls_the_client_makes_raise_forbidden_for_the_member(conn: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: list(conn.compute.hypervisors()),
        lambda: list(conn.identity.users()),
        lambda: conn.compute.create_flavor(name="m1.win", vcpus=4, ram=8192, disk=60),
    ]
    for call in calls:
        with pytest.raises(sdk_exc.ForbiddenException):
            call()


def test_clouds_yaml_has_the_admin_for_the_openstack_client(
        sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = sim.write_clouds_yaml(tmp_path / "clouds.yaml")
    assert set(yaml.safe_load(path.read_text())["clouds"]) == {"osbuild-sim",
                                                               "osbuild-sim-admin"}
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    admin = openstack.connect(cloud="osbuild-sim-admin")
    assert [h.name for h in admin.compute.hypervisors()] == ["sim-compute-1"]
    member = openstack.connect(cloud="osbuild-sim")
    with pytest.raises(sdk_exc.ForbiddenException):
        list(member.compute.hypervisors())
