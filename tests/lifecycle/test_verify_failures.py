"""A new image that fails its boot test never becomes current, and nothing is left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from tests.lifecycle.conftest import KNOWN_PASSWORD, CliResult, Lifecycle

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

FAMILY = "lc-verify"
# Short enough that a guest that never finishes costs little real time at the sim's speed.
VERIFY = {"timeout": "30m"}


@pytest.fixture(scope="module")
def good_image(lifecycle: Lifecycle) -> str:
    result = lifecycle.build(lifecycle.spec(FAMILY, verify=VERIFY))
    assert result.code == 0, result.explain()
    return result.event("build.succeeded")["image_id"]


def _failed_build(lifecycle: Lifecycle, spec: Path, scenario: dict[str, bool] | None,
                  *, json_lines: bool = True) -> tuple[CliResult, str, str]:
    # Every test server of this build shows the scenario, not just the first: under load the
    # previous build's servers may still be going away, so the first boot test can meet "No
    # valid host" and be retried (verify_image's NO_VALID_HOST_ATTEMPTS), and a scenario that
    # fired once would leave the retry a healthy guest. Dropped after the build.
    if scenario:
        lifecycle.sim.faults.add_guest_scenario(scenario, name="-verify$")
    try:
        result = lifecycle.build(spec, json_lines=json_lines)
    finally:
        lifecycle.sim.faults.clear()
    assert result.code == 1, result.out[-3000:] + result.err
    build_dir = max(lifecycle.logs.iterdir(), key=lambda p: p.stat().st_mtime)
    report = (build_dir / "report.json").read_text()
    new_image = next(r for r in json.loads(report)["resources"]
                     if r["kind"] == "image" and r["name"].endswith("-image"))["id"]
    return result, build_dir.name, new_image


def _assert_nothing_left_and_no_secret(lifecycle: Lifecycle, result: CliResult,
                                       build_id: str) -> None:
    assert lifecycle.leftovers() == {"servers": [], "volumes": [], "keypairs": []}
    logs = "".join(p.read_text(errors="replace")
                   for p in (lifecycle.logs / build_id).rglob("*") if p.is_file())
    assert KNOWN_PASSWORD not in result.out + result.err + logs


def _assert_previous_still_current(lifecycle: Lifecycle, good_image: str) -> None:
    current = [i for i in lifecycle.family(FAMILY) if i["current"]]
    assert [i["id"] for i in current] == [good_image]


@pytest.mark.parametrize(("scenario", "sections", "check", "detail"), [
    ({"cloudbase_init_never_finishes": True}, {}, "cloudbase-init",
     "did not show 'Plugins execution done'"),
    ({"no_password": True}, {}, "password", "no password was posted"),
    ({"wrong_key_password": True}, {}, "password", "does not decrypt"),
    (None, {"console_must_match": [r"Executing plugin 'NoSuchPlugin'"]},
     "console_must_match", "NoSuchPlugin"),
    (None, {"console_must_not_match": [r"Executing plugin 'MTUPlugin'"]},
     "console_must_not_match", "MTUPlugin"),
], ids=["never-finishes", "no-password", "wrong-key", "must-match", "must-not-match"])
def test_failed_verify_keeps_the_image_hidden_and_unpromoted(
        lifecycle: Lifecycle, good_image: str, scenario: dict[str, bool] | None,
        sections: dict[str, Any], check: str, detail: str) -> None:
    spec = lifecycle.spec(FAMILY, verify={**VERIFY, **sections})
    result, build_id, new_image = _failed_build(lifecycle, spec, scenario)

    failed = result.event("build.failed")
    assert failed["stage"] == "verify"
    assert f"check {check} failed" in failed["reason"] and detail in failed["reason"]
    _assert_nothing_left_and_no_secret(lifecycle, result, build_id)
    _assert_previous_still_current(lifecycle, good_image)

    image = lifecycle.image(new_image)
    assert image.is_hidden and naming.CURRENT_TAG not in image.tags
    assert image.properties[naming.PROP_VERIFY] == "failed"
    assert image.name == naming.resource_name(build_id, "image")  # never given its final name
    assert (lifecycle.logs / build_id / "verify-console.log").is_file()

    # It cannot be made current by hand either.
    refused = lifecycle.images("promote", new_image)
    assert refused.code == 2 and "osbuild_verify is failed" in refused.err
    _assert_previous_still_current(lifecycle, good_image)


def test_failed_verify_deletes_the_image_when_asked(lifecycle: Lifecycle,
                                                    good_image: str) -> None:
    spec = lifecycle.spec(FAMILY, verify={**VERIFY, "on_failure": "delete"})
    result, build_id, new_image = _failed_build(lifecycle, spec, {"no_password": True})

    assert "check password failed" in result.event("build.failed")["reason"]
    assert lifecycle.conn.image.find_image(new_image, ignore_missing=True) is None
    _assert_nothing_left_and_no_secret(lifecycle, result, build_id)
    _assert_previous_still_current(lifecycle, good_image)


def test_failed_verify_message_on_the_terminal(lifecycle: Lifecycle, good_image: str) -> None:
    spec = lifecycle.spec(FAMILY, verify=VERIFY)
    result, build_id, _ = _failed_build(lifecycle, spec, {"wrong_key_password": True},
                                        json_lines=False)

    assert "verify: check password failed" in result.err
    assert "kept" in result.err  # the hidden image, for a look
    _assert_nothing_left_and_no_secret(lifecycle, result, build_id)
    _assert_previous_still_current(lifecycle, good_image)


def test_preflight_problems_name_unknown_verify_flavor_and_network(
        lifecycle: Lifecycle, tmp_path: Path) -> None:
    from osbuild.pipeline import BuildOptions, EventBus
    from osbuild.pipeline.context import BuildContext
    from osbuild.pipeline.steps.verify_image import preflight_problems
    from osbuild.spec import load_spec

    def problems(**verify: Any) -> list[str]:
        spec = load_spec(lifecycle.spec("lc-preflight", verify=verify))
        ctx = BuildContext(spec=spec, build_id="20261126t000000-abcdef", conn=lifecycle.conn,
                           cloud_name=None, options=BuildOptions(log_dir=tmp_path),
                           bus=EventBus())
        return preflight_problems(ctx)

    assert problems(flavor="m1.large.40g", network="private") == []
    assert problems(flavor="m9.huge", network="nowhere") == [
        "verify.flavor: no flavor 'm9.huge'", "verify.network: no network 'nowhere'"]
    assert problems(enabled=False, flavor="m9.huge") == []
