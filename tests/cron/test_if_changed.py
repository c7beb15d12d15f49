"""`osbuild build --if-changed`: skip on identical inputs, rebuild when one changes or ages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from osbuild.unattended.fingerprint import PROP_FINGERPRINT, PROP_INPUT_PREFIX
from tests.cron.conftest import Cron

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _images(cron: Cron) -> list[str]:
    return sorted(i["id"] for i in cron.sim.resources()["images"] if not i.get("seeded"))


def _name(cron: Cron, image_id: str) -> str:
    [name] = [i["name"] for i in cron.sim.resources()["images"] if i["id"] == image_id]
    return str(name)


def _first_build(cron: Cron, spec: Path) -> str:
    run = cron.build(spec)
    assert run.exit_code == 0, run.why
    return str(run.success["image_id"])


def test_identical_inputs_skip_and_each_changed_input_rebuilds(cron: Cron) -> None:
    # One family through one sequence: first build, identical inputs, a spec edit, a new MSI.
    spec = cron.spec()
    image = _first_build(cron, spec)
    run = cron.build(spec, extra=("--if-changed",))
    assert run.exit_code == 0, run.why
    [skip] = run.named("build.skipped")
    # Named with its id: every image of the family can have the same name.
    assert skip["reason"].startswith(f"unchanged: {_name(cron, image)} ({image}) has the same "
                                     "inputs"), skip["reason"]
    assert not run.named("build.started")
    assert _images(cron) == [image]

    changed = cron.spec(image={"properties": {"owner_team": "platform"}})
    run = cron.build(changed, extra=("--if-changed",))
    assert run.exit_code == 0, run.why
    [why] = run.named("build.rebuilding")
    assert "the spec" in why["reason"]
    assert run.success["image_id"] != image

    msi = changed.parent / "CloudbaseInitSetup_x64.msi"
    msi.write_bytes(msi.read_bytes() + b"\0patched")
    run = cron.build(changed, extra=("--if-changed",))
    assert run.exit_code == 0, run.why
    assert "the cloudbase-init MSI" in run.named("build.rebuilding")[0]["reason"]
    assert run.named("build.succeeded")


def test_image_older_than_max_age_rebuilds(cron: Cron) -> None:
    spec = cron.spec(image={"max_age": "1s"})
    first = _first_build(cron, spec)
    time.sleep(1.5)  # the image's build time is wall-clock: let it pass max_age
    run = cron.build(spec, extra=("--if-changed",))
    assert run.exit_code == 0, run.why
    assert "older than" in run.named("build.rebuilding")[0]["reason"]
    assert run.success["image_id"] != first


def test_without_a_current_image_it_builds_and_stores_the_fingerprint(cron: Cron) -> None:
    run = cron.build(cron.spec(), extra=("--if-changed",))
    assert run.exit_code == 0, run.why
    assert "no current image" in run.named("build.rebuilding")[0]["reason"]
    done = run.success
    image = cron.sim.connect().image.get(f"/images/{done['image_id']}").json()
    assert image[PROP_FINGERPRINT] == done["fingerprint"]
    assert image[PROP_INPUT_PREFIX + "windows_iso"].startswith(("sha512:", "md5:"))
    assert len(image[PROP_INPUT_PREFIX + "cloudbase_msi"]) == 64
