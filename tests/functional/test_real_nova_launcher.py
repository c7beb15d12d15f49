"""The real Nova launcher itself: behind Keystone, validated responses, restartable."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.realstack import RealStack

pytestmark = pytest.mark.slow


def test_nova_is_behind_the_real_keystone(real_stack: RealStack) -> None:
    assert real_stack.nova is not None
    for url in (real_stack.nova.compute_url + "/servers",
                real_stack.nova.network_url + "/v2.0/networks"):
        resp = requests.get(url, headers={"X-Auth-Token": "gAAAAAnot-a-token"}, timeout=30)
        assert resp.status_code == 401, url
        assert real_stack.rs.auth_url.rsplit("/v3", 1)[0] in resp.headers["WWW-Authenticate"]


def test_nova_validates_its_responses_in_error_mode(real_stack: RealStack) -> None:
    assert real_stack.nova is not None
    conf = (real_stack.nova.workdir / "nova.conf").read_text()
    assert "response_validation = error" in conf
    assert real_stack.nova.workdir.joinpath("nova.conf").stat().st_mode & 0o077 == 0


def test_catalog_network_is_the_one_nova_plugs_servers_into(real_stack: RealStack) -> None:
    conn: Any = real_stack.connect()
    assert conn.compute.get_endpoint().startswith(real_stack.nova.compute_url)  # type: ignore[union-attr]
    net = conn.network.find_network("private", ignore_missing=False)
    assert net.id == "3cb9bc59-5699-4588-a4b1-b87f96708bc6"  # NeutronFixture.network_1


def test_nova_can_be_killed_and_restarted(real_stack: RealStack) -> None:
    assert real_stack.nova is not None
    port = real_stack.nova.port
    real_stack.restart_nova(kill=True)
    assert real_stack.nova.port == port
    conn: Any = real_stack.connect()
    assert "m1.large.40g" in {f.name for f in conn.compute.flavors()}
