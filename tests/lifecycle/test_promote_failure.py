"""A failure after the image passed verification never deletes the verified image."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuild import naming
from osbuild.spec import load_spec
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


def test_promote_gives_an_image_left_under_its_capture_name_the_specs_attributes(
        lifecycle: Lifecycle, tmp_path: Path) -> None:
    # Glance refuses promote's rename: the verified image is kept hidden under its capture
    # name, private and unshared. Made current as it is, it would serve a family under a
    # name nobody looks for.
    family = "lc-capture-name"
    spec = lifecycle.spec(family, image={"visibility": "shared", "tags": ["windows"]})
    lifecycle.sim.faults.add_rule(service="image", method="PATCH", body='"/name"',
                                  error=403, times=1)
    result = lifecycle.build(spec)
    assert result.code == 1, result.explain()
    assert result.event("build.failed")["stage"] == "promote"
    image_id = result.event("verify.passed")["image_id"]
    image = lifecycle.image(image_id)
    build_id = image.properties[naming.PROP_BUILD_ID]
    assert image.name == naming.resource_name(build_id, "image") and image.is_hidden

    # With no state of its build here and no spec, it is refused and says what to give.
    elsewhere = lifecycle.images("promote", image_id, "--state-dir", str(tmp_path / "none"))
    assert elsewhere.code == 2
    assert elsewhere.err.splitlines() == [
        f"osbuild: error: image {image_id}: still has its capture name {image.name} (its "
        "build stopped before giving it the spec's name, visibility, tags and members), and "
        f"no state of build {build_id} on this host names its spec; give it: "
        f"osbuild images promote {image_id} SPEC"]
    assert not [i for i in lifecycle.family(family) if i["current"]]
    # Another family's spec is refused.
    other = lifecycle.images("promote", image_id, str(lifecycle.spec("lc-not-it")))
    assert other.code == 2 and f"not an image of family lc-not-it ({family})" in other.err

    # Its build's state on this host names the spec: final attributes, then current.
    promoted = lifecycle.images("promote", image_id)
    assert promoted.code == 0, promoted.err
    image = lifecycle.image(image_id)
    assert image.name == load_spec(spec).image_name_for(build_id)
    assert (image.visibility, image.is_hidden) == ("shared", False)
    assert {"windows", naming.CURRENT_TAG} <= set(image.tags)
