"""A failure after the image passed verification never deletes the verified image."""

from __future__ import annotations

import pytest

from osbuild import naming
from tests.lifecycle.conftest import Lifecycle

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

FAMILY = "lc-promote-fails"


def test_a_promote_failure_keeps_the_verified_image_hidden(lifecycle: Lifecycle) -> None:
    # Glance refuses the first tag promote adds: the image has passed verify by then.
    lifecycle.sim.faults.add_rule(service="image", method="PUT", path="/tags/windows$",
                                  error=403, times=1)
    result = lifecycle.build(lifecycle.spec(FAMILY))
    assert result.code == 1, result.explain()
    failed = result.event("build.failed")
    assert failed["stage"] == "promote", failed
    result.event("verify.passed")
    [kept] = failed["kept"]
    image_id = kept.split()[1]
    image = lifecycle.image(image_id)
    assert image.status == "active"
    assert image.properties[naming.PROP_VERIFY] == "passed"
    assert image.is_hidden
    assert not [i for i in lifecycle.family(FAMILY) if i["current"]]
    assert lifecycle.leftovers() == {"servers": [], "volumes": [], "keypairs": []}
