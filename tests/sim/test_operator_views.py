"""What `openstack` client users try first answers in the simulated cloud (through the SDK
calls the client makes)."""

from __future__ import annotations

from typing import Any

import pytest
from openstack import exceptions as sdk_exc


def test_availability_zones_of_every_service(conn: Any) -> None:
    compute = list(conn.compute.availability_zones(details=True))
    assert [z.name for z in compute if z.name != "internal"] == ["nova"]
    nova = next(z for z in compute if z.name == "nova")
    assert "sim-compute-1" in nova.hosts
    assert [z.name for z in conn.block_storage.availability_zones()] == ["nova"]
    assert {z.name for z in conn.network.availability_zones()} == {"nova"}


def test_hypervisors_list_and_show(conn: Any) -> None:
    [brief] = list(conn.compute.hypervisors())
    assert brief.name == "sim-compute-1" and brief.state == "up"
    [detail] = list(conn.compute.hypervisors(details=True))
    assert detail.hypervisor_type == "QEMU"
    assert conn.compute.get_hypervisor(brief.id).name == "sim-compute-1"
    assert list(conn.compute.aggregates()) == []  # `hypervisor show` lists them


def test_compute_services(conn: Any) -> None:
    services = {(s.binary, s.host, s.state) for s in conn.compute.services()}
    assert ("nova-compute", "sim-compute-1", "up") in services


def test_identity_services_endpoints_and_users(conn: Any) -> None:
    types = {s.type for s in conn.identity.services()}
    assert {"identity", "compute", "image", "network", "block-storage"} <= types
    assert any(e.interface == "public" for e in conn.identity.endpoints())
    [user] = list(conn.identity.users())
    assert user.name == "admin"
    assert conn.identity.get_user(user.id).name == "admin"


def test_admin_creates_and_deletes_a_flavor(conn: Any) -> None:
    flavor = conn.compute.create_flavor(name="m1.win", vcpus=4, ram=8192, disk=60)
    assert conn.compute.find_flavor("m1.win").disk == 60
    with pytest.raises(sdk_exc.ConflictException):
        conn.compute.create_flavor(name="m1.win", vcpus=1, ram=512, disk=1)
    conn.compute.delete_flavor(flavor.id)
    assert conn.compute.find_flavor("m1.win") is None
