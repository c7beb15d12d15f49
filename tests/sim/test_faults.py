"""Injected faults: HTTP errors, dropped connections, latency, rates, scenarios, the file format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from openstack import exceptions

from osbuild.errors import InvalidInput
from osbuild.resources import examples_dir
from osbuild_sim.faults import Faults
from osbuild_sim.guest import GuestScenario
from tests.sim.conftest import run_until, server_status

BLANK_ROOT = {"boot_index": 0, "source_type": "blank", "destination_type": "volume",
              "volume_size": 1, "delete_on_termination": True}


def _get(sim: Any, conn: Any, path: str) -> requests.Response:
    return requests.get(f"{sim.base_url}{path}", timeout=10,
                        headers={"X-Auth-Token": conn.session.get_token()})


def test_example_faults_file_loads() -> None:
    example = examples_dir().parent / "sim-faults.example.yaml"
    faults = Faults.from_source(example)
    kinds = [s["kind"] for s in faults.to_dict()["scenarios"]]
    assert kinds == ["guest", "no_valid_host", "volume_error_from_image"]
    assert faults.quota("volume", "volumes") == 20
    assert [r.error for r in faults.rules] == [503, 429, "drop", None]


def test_unknown_keys_are_invalid_input(tmp_path: Path) -> None:
    bad = tmp_path / "faults.yaml"
    bad.write_text("rules:\n  - {service: compute, eror: 500}\n")
    with pytest.raises(InvalidInput, match="unknown key 'eror'"):
        Faults.from_source(bad)
    with pytest.raises(InvalidInput, match="unknown key 'typo'"):
        Faults.from_source({"typo": 1})
    with pytest.raises(InvalidInput, match="bad scenario"):
        Faults.from_source({"guest": [{"scenario": {"no_such_field": True}}]})


@pytest.mark.parametrize("key", ["fail_stage", "power_off_at_stage", "power_off_after_stage",
                                 "pending_reboot_after"])
def test_a_guest_fault_at_a_stage_that_does_not_exist_is_refused(key: str) -> None:
    # This module's own example said `fail_stage: cloudbase_init`: the guest never reaches
    # such a stage, the fault was used up silently and the build meant to fail succeeded.
    with pytest.raises(InvalidInput, match=f"guest: {key}: 'cloudbase_init' is not a guest "
                                           "stage \\(one of: winpe, .*cloudbaseinit"):
        Faults.from_source({"guest": [{"scenario": {key: "cloudbase_init"}}]})
    Faults.from_source({"guest": [{"scenario": {key: "cloudbaseinit"}}]})
    with pytest.raises(InvalidInput, match="not a guest stage"):
        Faults().add_guest_scenario(GuestScenario(fail_stage="sysprep:start"))


def test_the_documented_guest_fault_example_is_valid() -> None:
    import re

    import yaml

    import osbuild_sim.faults

    doc = osbuild_sim.faults.__doc__ or ""
    line = next(line for line in doc.splitlines() if "fail_stage:" in line)
    Faults.from_source({"guest": [yaml.safe_load(re.sub(r"^\s*- ", "", line))]})


def test_fixed_503_with_retry_after_fires_times_then_stops(sim: Any, conn: Any) -> None:
    sim.faults.add_rule(service="compute", method="GET", path="^/v2\\.1/flavors", error=503,
                        times=2, retry_after=7)
    for _ in range(2):
        answer = _get(sim, conn, "/compute/v2.1/flavors")
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "7"
        assert answer.json()["serviceUnavailable"]["code"] == 503
    assert _get(sim, conn, "/compute/v2.1/flavors").status_code == 200
    assert sim.stats()["injected_errors"] == {"compute 503": 2}


def test_429_and_500_are_scoped_by_service_method_and_path(sim: Any, conn: Any) -> None:
    sim.faults.add_rule(service="image", path="^/v2/images$", error=429, retry_after=3)
    sim.faults.add_rule(service="volume", method="POST", error=500)
    throttled = _get(sim, conn, "/image/v2/images")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    image_id = sim.resources()["images"][0]["id"]
    assert _get(sim, conn, f"/image/v2/images/{image_id}").status_code == 200
    assert list(conn.block_storage.volumes()) == []  # GET is untouched
    with pytest.raises(exceptions.HttpException) as err:
        conn.block_storage.create_volume(size=1, name="x")
    assert err.value.status_code == 500


def test_a_rule_with_a_body_pattern_fails_only_the_requests_whose_body_matches(
        sim: Any, conn: Any) -> None:
    # Glance takes a JSON patch: the rename alone fails, a property update in the same
    # PATCH shape goes through, and the body the handler reads is the one the rule read.
    sim.faults.add_rule(service="image", method="PATCH", body='"/name"', error=403)
    image = conn.image.create_image(name="before", disk_format="raw",
                                    container_format="bare")
    updated = conn.image.update_image(image, osbuild_note="kept")
    assert updated.properties["osbuild_note"] == "kept"
    with pytest.raises(exceptions.HttpException) as err:
        conn.image.update_image(image, name="after")
    assert err.value.status_code == 403
    assert conn.image.get_image(image.id).name == "before"
    with pytest.raises(InvalidInput, match="rules: body is not a valid regex"):
        Faults().add_rule(body="(", error=500)


def test_dropped_connection(sim: Any, conn: Any) -> None:
    sim.faults.add_rule(service="network", error="drop", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(sim, conn, "/network/v2.0/networks")
    assert _get(sim, conn, "/network/v2.0/networks").status_code == 200


def test_openstacksdk_retries_through_a_503(sim: Any) -> None:
    sim.faults.add_rule(service="compute", path="flavors", error=503, times=1, retry_after=0)
    conn = sim.connect(status_code_retries=2)
    assert len(list(conn.compute.flavors())) == 4
    assert sim.stats()["injected_errors"] == {"compute 503": 1}


def test_latency_is_added_and_counted(sim: Any, conn: Any) -> None:
    sim.faults.add_rule(service="network", latency=0.01)
    list(conn.network.networks())
    list(conn.network.networks())
    assert sim.stats()["injected_latency_seconds"] == pytest.approx(0.02)


def test_rate_draws_are_reproducible_with_a_seed(sim: Any, conn: Any) -> None:
    def run() -> list[int]:
        sim.faults.clear()
        sim.faults.load({"seed": 3, "rules": [{"service": "compute", "error": 500,
                                               "rate": 0.5}]})
        return [_get(sim, conn, "/compute/v2.1/flavors").status_code for _ in range(20)]

    first = run()
    assert set(first) == {200, 500}
    assert run() == first


def test_faults_over_http(sim: Any, conn: Any) -> None:
    posted = requests.post(f"{sim.base_url}/_sim/faults", timeout=10, json={
        "rules": [{"service": "compute", "path": "flavors", "error": 500}],
        "quotas": {"compute": {"instances": 3}}})
    assert posted.status_code == 200
    assert posted.json()["quotas"]["compute"]["instances"] == 3
    assert _get(sim, conn, "/compute/v2.1/flavors").status_code == 500
    bad = requests.post(f"{sim.base_url}/_sim/faults", json={"nope": 1}, timeout=10)
    assert bad.status_code == 400
    assert requests.delete(f"{sim.base_url}/_sim/faults", timeout=10).status_code == 200
    assert _get(sim, conn, "/compute/v2.1/flavors").status_code == 200
    assert sim.faults.quota("compute", "instances") == 10


def test_no_valid_host_puts_the_server_in_error(sim: Any, conn: Any) -> None:
    sim.faults.add_scenario("no_valid_host", name="^unlucky$", times=1)
    server = conn.compute.create_server(name="unlucky", flavor_id="2", networks="none",
                                        block_device_mapping=[BLANK_ROOT])
    run_until(sim, lambda: server_status(conn, server.id) != "BUILD")
    failed = conn.compute.get_server(server.id)
    assert failed.status == "ERROR"
    assert failed.fault["message"].startswith("No valid host was found.")
    assert sim.world.servers[server.id].host is None
    with pytest.raises(exceptions.ConflictException):
        conn.compute.get_server_console_output(server)
    again = conn.compute.create_server(name="unlucky", flavor_id="2", networks="none",
                                       block_device_mapping=[BLANK_ROOT])
    run_until(sim, lambda: server_status(conn, again.id) != "BUILD")
    assert server_status(conn, again.id) == "ACTIVE"


def test_guest_scenario_reaches_the_matching_server(sim: Any, conn: Any) -> None:
    sim.faults.add_guest_scenario({"setup_hangs": True}, name="-builder$", times=1)
    other = conn.compute.create_server(name="x-verify", flavor_id="2", networks="none",
                                       block_device_mapping=[BLANK_ROOT])
    target = conn.compute.create_server(name="x-builder", flavor_id="2", networks="none",
                                        block_device_mapping=[BLANK_ROOT])
    assert sim.world.servers[target.id].scenario == GuestScenario(setup_hangs=True)
    assert sim.world.servers[other.id].scenario is None
