"""`osbuild build --refresh` against real Nova, Cinder, Glance and Keystone (issue 14).

A full build's image is refreshed by a builder booted from a Cinder volume that real Cinder
made from the image (real ``volume_image_metadata``, real ``bootable``), started by the
user data and config drive real Nova hands to the guest; the refreshed image goes through
real upload-to-image, properties, verify and promotion. The guest is the simulator's
Windows model (:mod:`tests.support.guestdriver`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuild import naming
from osbuild.images.family import list_family
from osbuild_sim.guest import GuestScenario
from tests.support.realbuilds import (
    BASELINE,
    assert_published,
    failed_report,
    in_stage,
    kill_during,
    resume,
    run_build,
    write_spec,
)
from tests.support.realservices import ProjectUser
from tests.support.realstack import RealStack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("baseline")]
FAMILY = "refresh-real"


class Family:
    """The family's spec and its full build; images are read as the project user."""

    def __init__(self, stack: RealStack, builder: ProjectUser, workdir: Path) -> None:
        self.stack, self.builder, self.workdir = stack, builder, workdir
        self.conn = stack.connect(builder)
        self.spec = write_spec(workdir, "ws2022-standard.yaml")
        data = yaml.safe_load(self.spec.read_text())
        self.spec.write_text(yaml.safe_dump({**data, "name": FAMILY}, sort_keys=False))
        self.full_id = ""

    def props(self, image_id: str) -> dict[str, Any]:
        return dict(self.conn.image.get(f"/images/{image_id}").json())

    def current(self) -> str:
        images = [i.id for i in list_family(self.conn, FAMILY, with_usage=False) if i.current]
        assert len(images) == 1, images
        return str(images[0])

    def images(self) -> set[str]:
        return {i.id for i in list_family(self.conn, FAMILY, with_usage=False)}

    def leftovers(self) -> list[str]:
        """What is left in any project (as admin), besides the family's images and what
        existed before the test."""
        return self.stack.leftovers(keep_images=self.images(), users=[self.builder],
                                    baseline=BASELINE)

    def delete_images(self) -> None:
        for image in self.conn.image.images(owner=self.builder.project_id):
            if image.id not in self.stack.media.values():
                self.conn.image.delete_image(image, ignore_missing=True)


@pytest.fixture(scope="module")
def family(real_stack: RealStack, builder: ProjectUser,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Family]:
    workdir = tmp_path_factory.mktemp("real-refresh")
    clouds = real_stack.write_clouds_yaml(workdir / "clouds.yaml", builder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN"):
            mp.delenv(var, raising=False)
        fam = Family(real_stack, builder, workdir)
        try:
            yield fam
        finally:
            fam.delete_images()


def build(family: Family, capsys: Any, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    code, events, err, took = run_build(family.workdir, capsys, family.spec, *extra)
    print(f"{' '.join(extra) or 'full build'}: exit {code} in {took:.1f}s")
    return code, events, err


def why(events: list[dict[str, Any]], err: str) -> str:
    failed = [e for e in events if e["event"] == "build.failed"]
    return f"{json.dumps(failed)[:3000]}\n{err[-2000:]}"


def started(events: list[dict[str, Any]]) -> dict[str, Any]:
    return [e for e in events if e["event"] == "build.started"][-1]


def succeeded(events: list[dict[str, Any]]) -> dict[str, Any]:
    return [e for e in events if e["event"] == "build.succeeded"][-1]


def test_a_full_build_on_real_nova_is_the_family_generation_0(
    family: Family, capsys: Any
) -> None:
    code, events, err = build(family, capsys)
    assert code == 0, why(events, err)
    family.full_id = assert_published(family.conn, events)
    props = family.props(family.full_id)
    assert props[naming.PROP_BUILD_KIND] == "full" and props[naming.PROP_GENERATION] == "0"
    assert family.current() == family.full_id
    assert family.leftovers() == []


def test_a_failed_refresh_on_real_nova_leaves_the_parent_current_and_nothing_behind(
    family: Family, guests: Any, capsys: Any
) -> None:
    assert family.full_id, "the full build failed"
    guests.set_guest_scenario("*-builder", GuestScenario(fail_stage="updates",
                                                         fail_message="0x800f0922"))
    code, events, err = build(family, capsys, "--refresh", "always")
    assert code == 1, why(events, err)
    assert started(events)["kind"] == "refresh"
    failure = failed_report(events)
    assert "updates" in json.dumps(failure) and "0x800f0922" in json.dumps(failure), failure
    assert family.current() == family.full_id
    assert family.images() == {family.full_id}
    assert family.leftovers() == []


def test_a_refresh_on_real_nova_boots_the_parent_and_is_promoted(
    family: Family, capsys: Any
) -> None:
    assert family.full_id, "the full build failed"
    code, events, err = build(family, capsys, "--refresh", "always")
    assert code == 0, why(events, err)
    assert started(events)["kind"] == "refresh"
    assert started(events)["parent_image_id"] == family.full_id
    # The guest's disk record: the refresh's build id, a second sysprep on the parent's disk.
    child_id = assert_published(family.conn, events)
    done = succeeded(events)
    assert done["promoted"] is True and done["verify"] == "passed", done
    child = family.props(child_id)
    assert child[naming.PROP_BUILD_KIND] == "refresh"
    assert child[naming.PROP_PARENT] == family.full_id
    assert child[naming.PROP_GENERATION] == "1"
    assert child["osbuild_fingerprint"] == family.props(family.full_id)["osbuild_fingerprint"]
    # Real Cinder copied the parent's properties into the volume's image metadata and
    # upload-to-image carried them on: the child boots as the parent did.
    for key in ("os_type", "hw_disk_bus", "hw_firmware_type"):
        assert child.get(key) == family.props(family.full_id).get(key), key
    stages = [e["stage"] for e in events if e["event"] == "stage" and e["status"] == "start"]
    assert stages == ["firstlogon", "updates", "cleanup", "sysprep"], stages
    created = [e["name"].rsplit("-", 1)[-1] for e in events
               if e["event"] == "resource.created" and e["kind"] == "volume"]
    assert sorted(created) == ["config", "target"], created
    assert family.current() == child_id
    assert family.leftovers() == []


def test_auto_on_real_nova_refreshes_when_nothing_changed(
    family: Family, capsys: Any
) -> None:
    parent = family.current()
    assert family.props(parent).get(naming.PROP_BUILD_KIND) == "refresh", "no refresh yet"
    code, events, err = build(family, capsys, "--refresh", "auto")
    assert code == 0, why(events, err)
    kind = started(events)
    assert kind["kind"] == "refresh" and kind["parent_image_id"] == parent, kind
    assert "has the same inputs" in kind["reason"], kind
    child_id = assert_published(family.conn, events)
    assert family.props(child_id)[naming.PROP_GENERATION] == "2"
    assert family.current() == child_id
    assert family.leftovers() == []


def test_a_refresh_killed_on_real_nova_is_resumed_as_a_refresh_and_promoted(
    family: Family, guests: Any, capsys: Any
) -> None:
    # kill -9 while the guest installs the month's update; `osbuild resume` adopts the
    # builder booted from the parent and finishes the refresh it was.
    parent = family.current()
    generation = int(family.props(parent)[naming.PROP_GENERATION])
    guests.set_speed(100.0)
    workdir = family.workdir / "killed"
    workdir.mkdir()
    build_id = kill_during(family.spec, family.workdir / "clouds.yaml", workdir,
                           in_stage("updates"), "--refresh", "always")
    assert family.leftovers(), "the killed refresh left nothing to adopt"
    code, events, err = resume(build_id, workdir, capsys)
    assert code == 0, why(events, err)
    resumed = [e for e in events if e["event"] == "build.resumed"][-1]
    assert (resumed["kind"], resumed["parent_image_id"]) == ("refresh", parent), resumed
    child_id = assert_published(family.conn, events)
    done = succeeded(events)
    assert (done["kind"], done["parent_image_id"], done["generation"]) == (
        "refresh", parent, generation + 1), done
    assert family.props(child_id)[naming.PROP_PARENT] == parent
    assert family.current() == child_id
    assert family.leftovers() == []
