"""Without nova and cinder installed, upstream schema checks are a no-op that says so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from osbuild_sim import upstream_schemas


@pytest.fixture
def no_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(upstream_schemas, "package_version", lambda package: None)
    upstream_schemas.reset()
    yield
    upstream_schemas.reset()


def test_malformed_body_passes_and_status_explains(no_upstream: None) -> None:
    body = {"server": {"block_device_mapping_v2": [{"source_type": "floppy"}]}}
    assert (
        upstream_schemas.check_request("compute", "POST", "/compute/v2.1/servers", (2, 94), body)
        is None
    )
    assert upstream_schemas.validate_response("compute", "servers.create", "2.94", {}) is None
    report = upstream_schemas.status()
    assert report["compute"] == "not validated: nova is not installed (the functional extra)"
    assert report["volume"] == "not validated: cinder is not installed (the functional extra)"


def test_action_for_reads_the_action_key_from_the_body() -> None:
    path = "/compute/v2.1/servers/0b7e/action"
    assert upstream_schemas.action_for("compute", "POST", path, {"os-stop": None}) == (
        "servers.action#os-stop"
    )
    assert upstream_schemas.action_for("compute", "POST", path, []) is None
    assert upstream_schemas.action_for("image", "POST", "/image/v2/images", {}) is None
