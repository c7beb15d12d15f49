"""Keystone auth (password, application credential, 401) and Neutron resources."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests
import yaml
from openstack import exceptions


def test_clouds_yaml_is_private_and_works_with_unmodified_openstacksdk(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sim.write_clouds_yaml(tmp_path / "clouds.yaml")
    assert path.stat().st_mode & 0o777 == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["clouds"]["osbuild-sim"]["auth"]["auth_url"] == sim.auth_url
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    conn = openstack.connect(cloud="osbuild-sim")
    assert conn.compute.find_flavor("m1.small").vcpus == 1
    assert conn.current_project_id == conn.identity.get_project(conn.current_project_id).id


def test_application_credential_auth(sim: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = sim.write_clouds_yaml(tmp_path / "clouds.yaml", application_credential=True)
    entry = yaml.safe_load(path.read_text())["clouds"]["osbuild-sim"]
    assert "password" not in yaml.safe_dump(entry)  # (osbuild-sim-admin keeps its own)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    conn = openstack.connect(cloud="osbuild-sim")
    assert [n.name for n in conn.network.networks()] == ["private"]


def test_wrong_password_is_401(sim: Any) -> None:
    from openstack.connection import Connection

    auth = dict(sim.auth(), password="wrong")
    conn = Connection(auth=auth, region_name="RegionOne", identity_api_version="3")
    from keystoneauth1.exceptions.http import Unauthorized

    with pytest.raises(Unauthorized):
        list(conn.compute.flavors())
    answer = requests.post(f"{sim.base_url}/identity/v3/auth/tokens", timeout=10, json={
        "auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "wrong"}}}}})
    assert answer.status_code == 401
    assert answer.json()["error"]["title"] == "Unauthorized"


def test_catalog_lists_every_service(sim: Any) -> None:
    answer = requests.post(f"{sim.base_url}/identity/v3/auth/tokens", timeout=10, json={
        "auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": sim.password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert answer.status_code == 201
    assert answer.headers["X-Subject-Token"]
    types = {entry["type"] for entry in answer.json()["token"]["catalog"]}
    assert types == {"identity", "compute", "image", "volumev3", "block-storage", "network"}


def test_networks_subnets_security_groups(conn: Any) -> None:
    network = conn.network.find_network("private")
    assert network is not None and network.status == "ACTIVE"
    subnets = list(conn.network.subnets(network_id=network.id))
    assert [s.cidr for s in subnets] == ["10.0.0.0/24"]
    assert conn.network.find_security_group("default") is not None
    with pytest.raises(exceptions.NotFoundException):
        conn.network.get_network("missing")
    assert conn.network.find_network("missing") is None


def test_a_port_carries_its_own_creation_time(conn: Any) -> None:
    # Neutron's ports carry the standard attributes created_at and updated_at, set when the
    # port is made (api-ref network v2, "Show port details": "Time at which the resource has
    # been created (in UTC ISO8601 format)"; openstacksdk's Port reads `created_at`). osbuild
    # gc ages a builder's port by it: a fixed date made a port minutes old look a year old.
    network = conn.network.find_network("private")
    before = datetime.now(UTC).replace(microsecond=0)
    server = conn.compute.create_server(
        name="port-age", flavor_id="2", networks=[{"uuid": network.id}],
        block_device_mapping=[{"boot_index": 0, "source_type": "blank",
                               "destination_type": "volume", "volume_size": 1,
                               "delete_on_termination": True}])
    try:
        ports: list[Any] = []
        for _ in range(200):  # Nova asks Neutron for the port once a host is chosen
            ports = list(conn.network.ports(device_id=server.id))
            if ports:
                break
            time.sleep(0.05)
        assert ports
        for port in ports:
            created = datetime.fromisoformat(port.created_at.replace("Z", "+00:00"))
            assert before <= created <= datetime.now(UTC)
            assert port.updated_at == port.created_at
    finally:
        conn.compute.delete_server(server.id)
