"""`osbuild images`: names as well as IDs, spec files everywhere, a kept image verified again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from osbuild import naming
from osbuild.durations import parse_duration
from osbuild.spec import load_spec
from tests.e2e.conftest import WORK_PACE
from tests.lifecycle.conftest import Lifecycle

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _built(lifecycle: Lifecycle, spec: Path) -> str:
    result = lifecycle.build(spec)
    assert result.code == 0, result.explain()
    return str(result.event("build.succeeded")["image_id"])


@pytest.fixture(scope="module")
def same_name(lifecycle: Lifecycle) -> tuple[str, str]:
    """Two images of family lc-names that share one name (the first, the second)."""
    # "{name}-{date}": two builds on one day give two images of one name.
    spec = lifecycle.spec("lc-names", image={"name": "lc-names-{date}"})
    return _built(lifecycle, spec), _built(lifecycle, spec)


def test_promote_by_a_name_several_images_share_lists_them(
        lifecycle: Lifecycle, same_name: tuple[str, str]) -> None:
    first, second = same_name
    name = lifecycle.image(second).name
    assert lifecycle.image(first).name == name

    result = lifecycle.images("promote", name)
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines[0] == f"osbuild: error: image {name}: 2 images have this name; give the ID of one:"
    assert lines[1].startswith(f"osbuild: error:   {second}  version ")
    assert lines[1].endswith(", verify passed, current")
    assert lines[2].startswith(f"osbuild: error:   {first}  version ")

    unknown = lifecycle.images("promote", "no-such-image")
    assert unknown.code == 2 and "no image with this ID or name" in unknown.err


def test_promote_says_what_it_did_not_do(
        lifecycle: Lifecycle, same_name: tuple[str, str]) -> None:
    # From an outside tryout: an ISO read as "no image ... in Glance", the current image
    # was "promoted" again, and another family's spec went unchecked once the image had
    # its final name.
    iso = lifecycle.images("promote", "virtio-win.iso")
    assert iso.code == 2
    assert iso.err == ("osbuild: error: image virtio-win.iso: not an osbuild image (no osbuild "
                       "tag); give the name or ID of one osbuild made\n")
    first, second = same_name
    lifecycle.images("promote", second)  # current, whatever a test before did
    again = lifecycle.images("promote", second)
    assert again.code == 0, again.err
    assert again.out.startswith(f"lc-names: already current: {lifecycle.image(second).name} "
                                f"({second}, version "), again.out
    other = lifecycle.spec("lc-other-family")
    refused = lifecycle.images("promote", first, str(other))
    assert refused.code == 2
    assert refused.err == (f"osbuild: error: image {first}: not an image of family "
                           "lc-other-family (lc-names)\n")
    assert naming.CURRENT_TAG in lifecycle.image(second).tags


def test_rollback_takes_the_spec_file_and_promote_a_unique_name(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-rollspec", image={"superseded": "hide"})
    first = _built(lifecycle, spec)
    second = _built(lifecycle, spec)
    result = lifecycle.images("rollback", str(spec))
    assert result.code == 0, result.err
    assert first in result.out
    assert naming.CURRENT_TAG in lifecycle.image(first).tags

    result = lifecycle.images("promote", lifecycle.image(second).name, "--json")
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1  # one JSON object per line, as every --json prints
    assert json.loads(result.out)["image"]["id"] == second
    assert naming.CURRENT_TAG in lifecycle.image(second).tags
    assert naming.CURRENT_TAG not in lifecycle.image(first).tags


def test_verify_runs_the_boot_test_of_a_kept_image_again(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-again", verify={"timeout": "30m"})
    lifecycle.sim.faults.add_guest_scenario({"no_password": True}, name="-verify$", times=1)
    failed = lifecycle.build(spec)
    assert failed.code == 1
    image_id = failed.event("verify.failed")["image_id"]
    assert lifecycle.image(image_id).properties[naming.PROP_VERIFY] == "failed"

    # Without a spec: the build's state on this host names it.
    again = lifecycle.images("verify", image_id, "--json")
    assert again.code == 0, again.out + again.err
    assert again.event("verify.passed")["image_id"] == image_id
    assert lifecycle.image(image_id).properties[naming.PROP_VERIFY] == "passed"
    # It built nothing, and says so: its events and report are of kind `verify` (was `full`).
    assert again.event("build.started")["kind"] == "verify"
    report = json.loads(Path(again.event("build.succeeded")["report"]).read_text())
    assert report["kind"]["kind"] == "verify"
    assert report["kind"]["reason"].startswith(f"osbuild images verify {image_id}")
    assert lifecycle.leftovers() == {"servers": [], "volumes": [], "keypairs": []}

    told = lifecycle.images("verify", image_id)
    assert told.code == 0, told.err
    assert f"passed its boot test; make it current with: osbuild images promote {image_id}" \
        in told.out

    promoted = lifecycle.images("promote", image_id)
    assert promoted.code == 0, promoted.err
    # ...as its build's promote step would have left it: final name and visibility, current.
    image = lifecycle.image(image_id)
    build_id = image.properties[naming.PROP_BUILD_ID]
    assert image.name == load_spec(spec).image_name_for(build_id)
    assert image.visibility == load_spec(spec).image.visibility
    assert naming.CURRENT_TAG in image.tags and not image.is_hidden

    # The current image's boot test, run again, does not say to promote it.
    told = lifecycle.images("verify", image_id)
    assert told.code == 0, told.err
    assert "passed its boot test; it is the family's current image" in told.out
    assert "promote" not in told.out


def test_verify_keeps_the_name_of_an_image_named_already(
        lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch) -> None:
    # `{datetime}` formatted again at verify time renamed the current image, which users
    # and tooling know by name (an outside tryout, session 31). Only an image still under
    # its capture name (a failed boot test left it there) gets its final name.
    spec = lifecycle.spec("lc-keepname", image={"name": "lc-keepname-{datetime}"})
    image_id = _built(lifecycle, spec)
    named = lifecycle.image(image_id).name
    time.sleep(1.1)  # {datetime} has seconds: a new one would differ
    # The cloud from $OS_CLOUD, as cron gives it: recorded as `osbuild build` records it
    # (its events and report said null).
    monkeypatch.setenv("OS_CLOUD", lifecycle.sim.cloud_name)
    again = lifecycle.cli("images", "verify", image_id, "--json")
    assert again.code == 0, again.err
    assert again.event("build.started")["cloud"] == lifecycle.sim.cloud_name
    report = json.loads(Path(again.event("build.succeeded")["report"]).read_text())
    assert report["cloud"] == lifecycle.sim.cloud_name
    assert lifecycle.image(image_id).name == named
    assert naming.CURRENT_TAG in lifecycle.image(image_id).tags


def test_verify_refuses_an_image_of_another_family(
        lifecycle: Lifecycle, same_name: tuple[str, str]) -> None:
    image_id = same_name[0]
    other = lifecycle.spec("lc-other")
    result = lifecycle.images("verify", image_id, str(other))
    assert result.code == 2
    assert f"image {image_id}: not an image of family lc-other (lc-names)" in result.err


def test_images_list_right_after_a_build_at_speed_1000_shows_a_real_age(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The simulated clock runs 1000 times faster than osbuild's wall clock; the services
    # used to print it, so a fresh image was created in osbuild's future: age `-`.
    from osbuild_sim import SimCloud

    with SimCloud(speed=1000.0, work_pace=WORK_PACE) as sim:
        for key, value in sim.env(sim.write_clouds_yaml(tmp_path / "clouds.yaml")).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        lifecycle = Lifecycle(sim, tmp_path)
        started = time.monotonic()
        image_id = _built(lifecycle, lifecycle.spec("lc-age"))
        took = time.monotonic() - started
        listed = lifecycle.images("list", "--family", "lc-age")
        [row] = [line.split() for line in listed.out.splitlines() if image_id in line]
        [image] = lifecycle.family("lc-age")
    assert listed.code == 0, listed.err
    assert listed.out.splitlines()[0].split()[-3:] == ["AGE", "IN", "USE"]
    age = row[-2]  # the columns end AGE, IN USE; CURRENT and HIDDEN may be blank
    assert row[4] == "full"  # MADE BY, after VERSION, ID, NAME, STATUS
    assert (image["kind"], image["generation"], image["parent_image_id"]) == ("full", 0, None)
    assert age != "-"
    # Under a second old it reads `0s` (parse_duration takes positive durations only).
    assert age == "0s" or parse_duration(age) <= took + 5
    assert 0 <= image["age_seconds"] <= took + 5


def test_images_take_the_specs_cloud_and_one_cloud_only(lifecycle: Lifecycle) -> None:
    import yaml

    spec = lifecycle.spec("lc-clouds")
    data = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**data, "clouds": [lifecycle.sim.cloud_name]}))
    # As `osbuild build SPEC` would: the spec's one cloud, no --os-cloud needed.
    listed = lifecycle.cli("images", "list", str(spec))
    assert (listed.code, listed.out) == (0, "lc-clouds: no images\n"), listed.err
    spec.write_text(yaml.safe_dump({**data, "clouds": [lifecycle.sim.cloud_name, "west"]}))
    both = lifecycle.cli("images", "rollback", str(spec))
    assert both.code == 2
    assert both.err == (f"osbuild: error: images rollback: {spec} builds in 2 clouds "
                        f"({lifecycle.sim.cloud_name}, west); give one with --os-cloud NAME\n")
    # Two clouds to a one-cloud command: a usage error, not the last one silently.
    twice = lifecycle.images("list", "--family", "lc-clouds", "--os-cloud", "west")
    assert twice.code == 2
    assert (f"--os-cloud: this command works in one cloud; got west and "
            f"{lifecycle.sim.cloud_name}") in twice.err
