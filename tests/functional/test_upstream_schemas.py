"""osbuild_sim.upstream_schemas against Nova's and Cinder's own validators."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from osbuild_sim import upstream_schemas

VOLUME_ID = str(uuid.uuid4())
SERVER_ID = str(uuid.uuid4())


def _bdm(**overrides: Any) -> dict[str, Any]:
    entry = {
        "boot_index": 0,
        "uuid": VOLUME_ID,
        "source_type": "volume",
        "destination_type": "volume",
        "device_type": "disk",
        "delete_on_termination": False,
    }
    entry.update(overrides)
    return entry


def _server(mapping: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "server": {
            "name": "osbuild-x-builder",
            "flavorRef": "m1.large",
            "networks": "none",
            "block_device_mapping_v2": mapping,
            **extra,
        }
    }


# (service, kind, action, microversion, body, valid?)
CASES: list[tuple[str, str, str, str, Any, bool]] = [
    ("compute", "request", "servers.create", "2.94", _server([_bdm()], tags=["osbuild"]), True),
    ("compute", "request", "servers.create", "2.94", _server([_bdm(source_type="floppy")]), False),
    ("compute", "request", "servers.create", "2.94", _server([_bdm(boot_index="first")]), False),
    # disk_bus is a free string in the schema; Nova checks the bus later, in its compute API.
    ("compute", "request", "servers.create", "2.94", _server([_bdm(disk_bus="nvme0")]), True),
    ("compute", "request", "servers.create", "2.94", _server([_bdm(bogus=1)]), False),
    ("compute", "request", "servers.create", "2.94", _server([_bdm(volume_size="big")]), False),
    ("compute", "request", "servers.create", "2.94", _server([_bdm(volume_size=0)]), False),
    # networks 'none' and tags need 2.37 / 2.52: older microversions refuse them.
    ("compute", "request", "servers.create", "2.36", _server([_bdm()]), False),
    ("compute", "request", "servers.create", "2.51", _server([_bdm()], tags=["a"]), False),
    ("compute", "request", "servers.create", "2.52", _server([_bdm()], tags=["a"]), True),
    ("compute", "request", "servers.create", "2.94", _server([_bdm()], name=" lead"), False),
    ("compute", "request", "servers.action#createImage", "2.94",
     {"createImage": {"name": "img", "metadata": {"osbuild_role": "final"}}}, True),
    ("compute", "request", "servers.action#createImage", "2.94",
     {"createImage": {"metadata": {}}}, False),
    ("compute", "request", "servers.action#os-getConsoleOutput", "2.94",
     {"os-getConsoleOutput": {"length": "ten"}}, False),
    ("compute", "request", "servers.action#os-getConsoleOutput", "2.94",
     {"os-getConsoleOutput": {"length": "50"}}, True),
    ("compute", "request", "keypairs.create", "2.92",
     {"keypair": {"name": "osbuild-key", "public_key": "ssh-rsa AAAA x"}}, True),
    ("compute", "request", "keypairs.create", "2.92", {"keypair": {"name": "k"}}, False),
    ("compute", "request", "remote_consoles.create", "2.94",
     {"remote_console": {"protocol": "vnc", "type": "novnc"}}, True),
    ("compute", "response", "servers.create", "2.94",
     {"server": {"id": SERVER_ID, "links": [], "security_groups": [],
                 "OS-DCF:diskConfig": "MANUAL"}}, True),
    ("compute", "response", "servers.create", "2.94",
     {"server": {"id": "not-a-uuid", "links": [], "security_groups": [],
                 "OS-DCF:diskConfig": "MANUAL"}}, False),
    ("volume", "request", "volumes.create", "3.70",
     {"volume": {"size": 6, "name": "osbuild-x-iso", "imageRef": str(uuid.uuid4())}}, True),
    ("volume", "request", "volumes.create", "3.70", {"volume": {"size": "six"}}, False),
    ("volume", "request", "volumes.create", "3.70", {"volume": {"size": 0}}, False),
    ("volume", "request", "volumes.action#os-volume_upload_image", "3.70",
     {"os-volume_upload_image": {"image_name": "final", "disk_format": "raw",
                                 "container_format": "bare", "visibility": "private",
                                 "protected": False}}, True),
    ("volume", "request", "volumes.action#os-volume_upload_image", "3.70",
     {"os-volume_upload_image": {"image_name": "final", "disk_format": "floppy"}}, False),
    # visibility and protected only exist from volume API 3.1.
    ("volume", "request", "volumes.action#os-volume_upload_image", "3.0",
     {"os-volume_upload_image": {"image_name": "final", "visibility": "private"}}, False),
    ("volume", "request", "volumes.action#os-set_image_metadata", "3.70",
     {"os-set_image_metadata": {"metadata": {"hw_machine_type": "q35"}}}, True),
    ("volume", "request", "volumes.action#os-set_image_metadata", "3.70",
     {"os-set_image_metadata": {"metadata": ["hw_machine_type"]}}, False),
]  # fmt: skip


def _oracle(package: str, cases: list[dict[str, Any]]) -> list[str | None]:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "osbuild_sim.upstream_extract", "oracle",
         package],
        input=json.dumps(cases), capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return list(json.loads(proc.stdout))


def test_verdicts_match_the_upstream_validators(schema_cache: Path) -> None:
    ours = []
    for service, kind, action, mv, body, _valid in CASES:
        check = (
            upstream_schemas.validate_request
            if kind == "request"
            else (upstream_schemas.validate_response)
        )
        ours.append(check(service, action, mv, body))
    theirs: dict[int, str | None] = {}
    for service, package in upstream_schemas.PACKAGES.items():
        picked = [i for i, case in enumerate(CASES) if case[0] == service]
        cases = [
            {"kind": CASES[i][1], "action": CASES[i][2], "microversion": CASES[i][3],
             "body": CASES[i][4]}
            for i in picked
        ]  # fmt: skip
        theirs.update(zip(picked, _oracle(package, cases), strict=True))
    for i, (service, kind, action, mv, _body, valid) in enumerate(CASES):
        label = f"case {i}: {service} {kind} {action} @{mv}"
        assert ours[i] == theirs[i], label
        assert (ours[i] is None) == valid, f"{label}: {ours[i]}"


def test_malformed_mapping_gets_nova_text(schema_cache: Path) -> None:
    error = upstream_schemas.validate_request(
        "compute", "servers.create", (2, 94), _server([_bdm(source_type="floppy")])
    )
    assert error == (
        "Invalid input for field/attribute source_type. Value: floppy. "
        "'floppy' is not one of ['volume', 'image', 'snapshot', 'blank']"
    )


def test_check_request_maps_http_paths_to_actions(schema_cache: Path) -> None:
    bad = _server([_bdm(boot_index="first")])
    assert upstream_schemas.check_request("compute", "POST", "/compute/v2.1/servers", (2, 94), bad)
    # A GET carries no body to validate; an unknown action is not ours to judge.
    assert (
        upstream_schemas.check_request("compute", "GET", "/compute/v2.1/servers", (2, 94), bad)
        is None
    )
    assert upstream_schemas.action_for(
        "volume", "POST", f"/volume/v3/abc/volumes/{VOLUME_ID}/action",
        {"os-volume_upload_image": {}},
    ) == "volumes.action#os-volume_upload_image"  # fmt: skip
    assert (
        upstream_schemas.action_for(
            "compute", "POST", f"/compute/v2.1/servers/{SERVER_ID}/action", {"a": 1, "b": 2}
        )
        is None
    )


def test_schemas_are_cached_per_package_version(
    schema_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream_schemas.validate_request("compute", "servers.create", "2.94", {})
    version = upstream_schemas.package_version("nova")
    [cached] = schema_cache.glob(f"nova-{version}-*.json")  # and per controller list
    assert json.loads(cached.read_text())["version"] == version
    upstream_schemas.reset()

    def no_subprocess(package: str) -> dict[str, Any]:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(upstream_schemas, "extract_in_subprocess", no_subprocess)
    error = upstream_schemas.validate_request("compute", "servers.create", "2.94", {})
    assert error == "'server' is a required property"
    assert upstream_schemas.status()["compute"].startswith(f"nova {version}:")
