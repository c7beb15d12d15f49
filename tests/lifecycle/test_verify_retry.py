"""The boot test rides out a transient "No valid host"; a kept image can be verified again."""

from __future__ import annotations

import pytest

from osbuild import naming
from tests.lifecycle.conftest import Lifecycle

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

FAMILY = "lc-retry"
VERIFY = {"timeout": "1h"}


def test_no_valid_host_for_the_test_server_is_retried(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec(FAMILY, verify=VERIFY)
    lifecycle.sim.faults.add_scenario("no_valid_host", name="-verify$", times=2)
    result = lifecycle.build(spec)
    assert result.code == 0, result.explain()
    retries = [e["message"] for e in result.events()
               if e["event"] == "info" and "no valid host" in e["message"]]
    assert retries == [
        "verify: no valid host for the test server (attempt 1 of 3); retrying in 1m",
        "verify: no valid host for the test server (attempt 2 of 3); retrying in 1m",
    ]
    image = lifecycle.image(result.event("build.succeeded")["image_id"])
    assert image.properties[naming.PROP_VERIFY] == "passed"
    assert lifecycle.leftovers() == {"servers": [], "volumes": [], "keypairs": []}


def test_no_valid_host_three_times_fails_the_check(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec(FAMILY, verify=VERIFY)
    lifecycle.sim.faults.add_scenario("no_valid_host", name="-verify$", times=3)
    result = lifecycle.build(spec)
    assert result.code == 1
    assert "verify: check server-active failed" in result.event("build.failed")["reason"]
    assert "No valid host" in result.event("build.failed")["reason"]
    assert lifecycle.leftovers() == {"servers": [], "volumes": [], "keypairs": []}


def test_boot_from_volume_is_said_once_as_information(lifecycle: Lifecycle) -> None:
    # m1.large has no root disk: the README calls booting from a volume normal.
    lifecycle.sim.faults.add_scenario("no_valid_host", name="-verify$", times=1)
    result = lifecycle.build(lifecycle.spec(FAMILY, verify=VERIFY), json_lines=False)
    assert result.code == 0, result.err
    said = [line for line in result.err.splitlines() if "booting the test server" in line]
    assert len(said) == 1
    assert said[0].endswith(": verify: flavor m1.large has a 0 GB root disk; booting the "
                            "test server from a volume")
    assert "warning" not in said[0]
