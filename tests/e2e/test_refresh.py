"""`osbuild build --refresh`: patch the family's current image instead of reinstalling."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.cli import main
from osbuild.errors import InvalidInput
from osbuild.images.family import list_family
from osbuild.images.manage import rollback
from osbuild.images.refresh import RefreshMode, choose
from osbuild.spec import RefreshSpec, load_spec
from osbuild.unattended.fingerprint import current_image_properties, inputs_now, should_skip
from osbuild_sim import disk_usage, servicing
from tests.e2e.conftest import WORK_PACE, BuildRun, Cloud, sim_cloud

# Builds in the simulated cloud: seconds each.
pytestmark = pytest.mark.slow


def _image(cloud: Cloud, image_id: str) -> dict[str, Any]:
    return dict(cloud.sim.connect().image.get(f"/images/{image_id}").json())


def _current(cloud: Cloud, family: str = "ws2022-standard") -> str:
    images = [i for i in list_family(cloud.sim.connect(), family, with_usage=False)
              if i.current]
    assert len(images) == 1, images
    return images[0].id


def _kind(run: BuildRun) -> dict[str, Any]:
    started = run.named("build.started")
    assert started, run.stderr
    return started[-1]


class Family:
    """One family in a cloud of its own: a full build, then a refresh of it."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        # One refresh in a row at most: the next `auto` must build in full.
        self.spec = cloud.spec(refresh={"max_generations": 1})
        self.full = cloud.build(self.spec)
        assert self.full.exit_code == 0, self.full.why
        self.refresh = cloud.build(self.spec, extra=("--refresh", "always"))
        assert self.refresh.exit_code == 0, self.refresh.why


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Family]:
    with sim_cloud(tmp_path_factory.mktemp("refresh")) as cloud:
        yield Family(cloud)


def test_a_refresh_patches_the_current_image_and_is_promoted(family: Family) -> None:
    cloud, full, refresh = family.cloud, family.full.success, family.refresh.success
    assert _kind(family.full)["kind"] == "full"
    assert _kind(family.refresh)["kind"] == "refresh"
    assert _kind(family.refresh)["parent_image_id"] == full["image_id"]
    assert refresh["promoted"] is True and refresh["verify"] == "passed"
    # The success event says it too (a cron log reads it without the report).
    assert (full["kind"], full["parent_image_id"], full["generation"]) == ("full", None, 0)
    assert (refresh["kind"], refresh["parent_image_id"], refresh["generation"]) == (
        "refresh", full["image_id"], 1)
    assert _current(cloud) == refresh["image_id"]
    listed = {i.id: i for i in list_family(cloud.sim.connect(), "ws2022-standard")}
    assert listed[refresh["image_id"]].made_by == "refresh 1"  # `images list`'s MADE BY
    assert listed[refresh["image_id"]].parent_image_id == full["image_id"]
    assert listed[full["image_id"]].made_by == "full"
    # `status` says it in words (it read "made by full": outside, session 30).
    assert listed[full["image_id"]].made_by_words == "a full build"
    assert listed[refresh["image_id"]].made_by_words == "refresh 1"
    child, parent = _image(cloud, refresh["image_id"]), _image(cloud, full["image_id"])
    assert parent[naming.PROP_BUILD_KIND] == "full" and parent[naming.PROP_GENERATION] == "0"
    assert child[naming.PROP_BUILD_KIND] == "refresh"
    assert child[naming.PROP_PARENT] == full["image_id"]
    assert child[naming.PROP_GENERATION] == "1"
    # Nothing was reinstalled: the child is still the product of the parent's inputs.
    assert child["osbuild_fingerprint"] == parent["osbuild_fingerprint"]
    # The guest ran only the refresh's stages, from cloudbase-init (no Setup, no logon).
    stages = [e["stage"] for e in family.refresh.named("stage") if e["status"] == "start"]
    assert stages == ["firstlogon", "updates", "cleanup", "sysprep"]
    report = json.loads(Path(refresh["report"]).read_text())
    assert report["kind"]["kind"] == "refresh"
    assert report["kind"]["parent_image_id"] == full["image_id"]
    assert report["kind"]["generation"] == 1
    # No ISO was looked up or read; the Windows in the image came from the parent's ISOs.
    assert report["inputs"]["windows_iso"] is None and report["inputs"]["virtio_iso"] is None
    for key in naming.INSTALL_PROVENANCE:
        assert child[key] == parent[key], key
    assert cloud.leftovers(keep={full["image_id"], refresh["image_id"]}) == []


def test_a_refreshed_image_holds_its_parents_data_and_what_the_month_added(
        family: Family) -> None:
    # The builder boots a copy of the parent: the child's capture holds all of the parent's
    # files again (a sim once started the refresh on an empty disk and captured a 0.3 GB
    # image of a 12 GB parent), plus the month's update, without the page file its first
    # boot made (cleanup removed it and zeroed what it left).
    cloud = family.cloud
    parent = cloud.image_record(family.full.success["image_id"])["disk"]
    child = cloud.image_record(family.refresh.success["image_id"])["disk"]
    assert child["files"]["windows"] >= parent["files"]["windows"] - disk_usage.RESET_BASE_EXTRA
    assert child["files"]["software"] == parent["files"]["software"] > 0
    assert child["files"]["installed"] > parent["files"]["installed"]
    assert child["files"]["pagefile"] == 0 and child["freed"] == 0
    sizes = [int(_image(cloud, run.success["image_id"])["size"])
             for run in (family.full, family.refresh)]
    assert sizes[1] > sizes[0] > 8 * disk_usage.GIB, sizes


def _infos(run: BuildRun, stage: str) -> list[str]:
    return [e["detail"] for e in run.named("stage")
            if e["stage"] == stage and e["status"] == "info"]


def test_a_refresh_drops_the_page_file_with_its_update_restart(family: Family) -> None:
    # The month's update restart takes pagefile.sys along, so cleanup restarts no more: a
    # reboot less per refresh (issue 14). A full build's cleanup still restarts for it.
    updates = _infos(family.refresh, "updates")
    off = "page file off: this restart removes pagefile.sys for the image"
    assert updates.count(off) == 1, updates
    assert updates.index(off) < updates.index("resumed after reboot"), updates
    assert _infos(family.refresh, "cleanup") == [
        "component cleanup exited 0",
        "pagefile.sys went with the update restart: no restart for it here"]
    assert _infos(family.full, "cleanup") == ["component cleanup exited 0",
                                              "resumed after reboot"]
    assert off not in _infos(family.full, "updates")


def test_a_refresh_attaches_no_installation_media(family: Family) -> None:
    created = [e["name"].rsplit("-", 1)[-1] for e in family.refresh.named("resource.created")
               if e["kind"] == "volume"]
    assert "target" in created and not {"iso", "virtio"} & set(created), created


def test_auto_builds_in_full_after_the_generation_cap_then_refreshes_again(
        family: Family) -> None:
    cloud = family.cloud
    capped = cloud.build(family.spec, extra=("--refresh", "auto"))
    assert capped.exit_code == 0, capped.why
    assert _kind(capped)["kind"] == "full"
    assert "refresh 1 in a row (refresh.max_generations: 1)" in _kind(capped)["reason"]
    full_id = capped.success["image_id"]
    assert _image(cloud, full_id)[naming.PROP_GENERATION] == "0"
    # `validate --refresh auto` names the parent once (it said NAME (ID) twice, session 29).
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["validate", str(family.spec), "--os-cloud", cloud.sim.cloud_name,
                     "--refresh", "auto"]) == 0
    said = out.getvalue()
    assert f"a refresh of {_image(cloud, full_id)['name']} ({full_id}); it has the same " \
           "inputs, is " in said, said
    assert said.count(full_id) == 1, said

    again = cloud.build(family.spec, extra=("--refresh", "auto"))
    assert again.exit_code == 0, again.why
    assert _kind(again)["kind"] == "refresh", _kind(again)
    assert _kind(again)["parent_image_id"] == full_id
    # Its parent is a full build: not "refresh 0 in a row" (found from outside, session 28).
    assert "has the same inputs, is " in _kind(again)["reason"]
    reason = _kind(again)["reason"]
    assert reason.endswith(" old and was made by a full build"), reason
    assert _current(cloud) == again.success["image_id"]


def test_auto_builds_in_full_when_the_current_image_is_too_old(family: Family) -> None:
    conn = family.cloud.sim.connect()
    # The same inputs (digest and all) with room for more refreshes in a row.
    spec = load_spec(family.spec).model_copy(update={"refresh": RefreshSpec(max_generations=5)})
    # Runs before the input-changing test below: the current image is a refresh of this spec.
    soon = choose(conn, spec, RefreshMode.AUTO, now=datetime.now(UTC) + timedelta(days=44))
    assert soon.kind == "refresh", soon.reason
    late = datetime.now(UTC) + timedelta(days=46)
    choice = choose(conn, spec, RefreshMode.AUTO, now=late)
    assert choice.parent is None
    assert "older than refresh.max_age (45d)" in choice.reason, choice.reason


def test_a_deactivated_current_image_gets_a_full_build(family: Family) -> None:
    # An admin pulled a bad image: `auto` chose a refresh of it and failed (exit 2) at
    # every cron run, and --if-changed would skip (found from outside, session 30).
    conn, admin = family.cloud.sim.connect(), family.cloud.sim.connect(admin=True)
    spec = load_spec(family.spec).model_copy(update={"refresh": RefreshSpec(max_generations=5)})
    current = _current(family.cloud)
    admin.image.deactivate_image(current)
    try:
        choice = choose(conn, spec, RefreshMode.AUTO)
        assert choice.parent is None
        assert choice.reason.endswith(f"({current}) is deactivated, not active: a refresh "
                                      "boots from it"), choice.reason
        with pytest.raises(InvalidInput, match="is deactivated, not active"):
            choose(conn, spec, RefreshMode.ALWAYS)
        props = current_image_properties(conn, spec.name)
        inputs, _missing = inputs_now(conn, spec)
        skip, why = should_skip(props, inputs, None, True)
        assert not skip and why.endswith("is deactivated, not active"), why
    finally:
        admin.image.reactivate_image(current)
    assert choose(conn, spec, RefreshMode.AUTO).kind == "refresh"


def test_a_deactivated_iso_is_no_changed_input(family: Family) -> None:
    # Glance keeps a deactivated image's checksum (real Glance, tests/functional): an ISO
    # an admin pulled read as "inputs changed: the Windows ISO image", and auto chose a
    # full build its preflight then refused (an outside tryout, session 30). A refresh
    # needs no ISO.
    conn, admin = family.cloud.sim.connect(), family.cloud.sim.connect(admin=True)
    spec = load_spec(family.spec).model_copy(update={"refresh": RefreshSpec(max_generations=5)})
    iso = admin.image.find_image(spec.windows.iso_image)
    admin.image.deactivate_image(iso)
    try:
        choice = choose(conn, spec, RefreshMode.AUTO)
        assert choice.kind == "refresh", choice.reason
    finally:
        admin.image.reactivate_image(iso)


def test_always_stops_at_windows_generalization_limit(family: Family) -> None:
    # --refresh always passes refresh.max_generations by; sysprep's own limit (1001
    # generalizations of one installation) it cannot: the refresh would fail at sysprep,
    # after its whole update run (an outside tryout, session 30).
    conn = family.cloud.sim.connect()
    spec = load_spec(family.spec)
    current = _current(family.cloud)
    was = current_image_properties(conn, spec.name)[naming.PROP_GENERATION]
    conn.image.update_image(current, **{naming.PROP_GENERATION: "999"})
    try:
        assert choose(conn, spec, RefreshMode.ALWAYS).kind == "refresh"  # the 1001st
        conn.image.update_image(current, **{naming.PROP_GENERATION: "1000"})
        with pytest.raises(InvalidInput, match=r"is refresh 1000 in a row: its Windows has "
                           r"been generalized 1001 times, and sysprep stops at 1001 \(build "
                           r"it in full\)"):
            choose(conn, spec, RefreshMode.ALWAYS)
    finally:
        conn.image.update_image(current, **{naming.PROP_GENERATION: was})


def test_always_says_which_changed_inputs_the_refresh_leaves_out(family: Family) -> None:
    # A changed timezone went unapplied without a word under --refresh always (the image
    # keeps its parent's fingerprint); the reason, on the first line, now says so (s30).
    conn = family.cloud.sim.connect()
    spec = load_spec(family.spec)
    assert choose(conn, spec, RefreshMode.ALWAYS).reason == "--refresh always"
    changed = spec.model_copy(update={"windows": spec.windows.model_copy(
        update={"timezone": "W. Europe Standard Time"})})
    reason = choose(conn, changed, RefreshMode.ALWAYS).reason
    assert reason.startswith("--refresh always (inputs changed since "), reason
    assert reason.endswith(": the spec (windows); a refresh applies none of them, a full "
                           "build does)"), reason


def test_a_refresh_needs_cloudbase_inits_user_data_plugin(family: Family) -> None:
    spec = load_spec(family.spec)
    without = spec.model_copy(update={"cloudbase_init": spec.cloudbase_init.model_copy(
        update={"plugins": ("cloudbaseinit.plugins.common.mtu.MTUPlugin",)})})
    conn = family.cloud.sim.connect()
    with pytest.raises(InvalidInput, match="no UserDataPlugin"):
        choose(conn, without, RefreshMode.ALWAYS)
    assert "no UserDataPlugin" in choose(conn, without, RefreshMode.AUTO).reason


def test_auto_builds_in_full_when_an_input_changed(family: Family) -> None:
    cloud = family.cloud
    changed = cloud.spec(refresh={"max_generations": 1}, image={"min_ram": 8192})
    run = cloud.build(changed, extra=("--refresh", "auto"))
    assert run.exit_code == 0, run.why
    assert _kind(run)["kind"] == "full"
    assert "inputs changed since" in _kind(run)["reason"]
    assert "the spec" in _kind(run)["reason"]


def test_a_failed_refresh_leaves_the_current_image_current_and_nothing_behind(
        family: Family) -> None:
    cloud = family.cloud
    before = _current(cloud)
    kept = {i.id for i in list_family(cloud.sim.connect(), "ws2022-standard",
                                      with_usage=False)}
    cloud.sim.faults.add_guest_scenario({"fail_stage": "updates",
                                         "fail_message": "0x800f0922"}, name="builder$")
    run = cloud.build(family.spec, extra=("--refresh", "always"))
    assert run.exit_code == 1
    assert _kind(run)["kind"] == "refresh"
    assert run.failure["stage"] == "updates" and "0x800f0922" in run.failure["reason"]
    # The report of a refresh that made nothing still says what it tried to make.
    report = json.loads(Path(run.failure["report"]).read_text())
    parent_generation = naming.generation_of(_image(cloud, before))
    assert parent_generation is not None
    assert report["kind"] == {"kind": "refresh", "parent_image_id": before,
                              "generation": parent_generation + 1,
                              "reason": report["kind"]["reason"]}
    # So does its build.failed event, for log pipelines (only build.succeeded did, s30).
    failed = run.failure
    assert (failed["kind"], failed["parent_image_id"], failed["generation"]) == (
        "refresh", before, parent_generation + 1)
    assert _current(cloud) == before
    assert cloud.leftovers(keep=kept) == []


def test_a_refresh_needs_neither_iso(family: Family) -> None:
    # `always` refreshes whatever the ISOs are: a spec naming ISOs Glance no longer has
    # still refreshes (a full build's preflight would refuse it).
    cloud = family.cloud
    cloud.sim.faults.clear()  # the failed refresh's guest scenario
    before = _current(cloud)
    gone = cloud.spec(refresh={"max_generations": 1}, windows={"iso_image": "gone.iso"},
                      virtio={"iso_image": "gone-virtio.iso"})
    run = cloud.build(gone, extra=("--refresh", "always"))
    assert run.exit_code == 0, run.why
    assert _kind(run)["kind"] == "refresh" and _kind(run)["parent_image_id"] == before
    full = cloud.build(gone, extra=("--refresh", "never"))
    assert full.exit_code == 2
    assert "windows.iso_image: no image 'gone.iso' in Glance" in full.why, full.why


def test_always_without_a_current_image_is_invalid_input(cloud: Cloud) -> None:
    run = cloud.build(cloud.spec(), extra=("--refresh", "always"))
    assert run.exit_code == 2
    assert run.failure["reason"] == ("--refresh always: family ws2022-standard has no current "
                                     "image (build it in full first)")
    assert not run.named("build.started")
    assert cloud.leftovers() == []


def test_a_refresh_with_a_smaller_disk_setting_keeps_its_parents_disk_size(cloud: Cloud) -> None:
    # builder.disk_gb lowered after the full build: the refresh's disk is a copy of the
    # parent (40 GB), so its image's min_disk and boot-test volume are too; it published
    # min_disk 30 and booted its test from a 30 GB volume, which Cinder refuses (session 30).
    full = cloud.build(cloud.spec())
    assert full.exit_code == 0, full.why
    refresh = cloud.build(cloud.spec(builder={"disk_gb": 30}), extra=("--refresh", "always"))
    assert refresh.exit_code == 0, refresh.why
    image = _image(cloud, refresh.success["image_id"])
    assert (image["min_disk"], image["virtual_size"]) == (40, 40 * disk_usage.GIB)
    assert _current(cloud) == refresh.success["image_id"]




def test_a_parent_deleted_after_the_choice_is_refused_before_anything_is_created(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone deletes the current image between `auto`'s choice and the refresh's first
    # resource (render and preflight run in between): the refresh's preflight finds it gone
    # (exit 2, naming it, nothing created) instead of Cinder refusing the target volume
    # with a 400 after the config ISO was uploaded (exit 1).
    spec = cloud.spec()
    full = cloud.build(spec)
    assert full.exit_code == 0, full.why
    parent = full.success["image_id"]

    def choose_then_delete(conn: Any, *args: Any, **kwargs: Any) -> Any:
        choice = choose(conn, *args, **kwargs)
        cloud.sim.connect().image.delete_image(parent)
        return choice

    monkeypatch.setattr("osbuild.unattended.jobs.choose", choose_then_delete)
    run = cloud.build(spec, extra=("--refresh", "auto"))
    assert run.exit_code == 2, run.why
    assert _kind(run)["kind"] == "refresh" and _kind(run)["parent_image_id"] == parent
    assert "refresh: parent image ws2022-std-" in run.why and parent in run.why, run.why
    assert "no longer in Glance" in run.why, run.why
    # Only the rendered media (local, a refresh renders first) were made, and deleted.
    assert {e["kind"] for e in run.named("resource.created")} <= {"local"}
    assert cloud.leftovers() == []


def test_a_builder_flavor_with_less_ram_than_the_parents_min_ram_is_refused_in_preflight(
        cloud: Cloud) -> None:
    # The refresh builder boots a volume made from the parent, and Nova refuses a flavor with
    # less RAM than its min_ram (FlavorMemoryTooSmall, also through volume_image_metadata).
    # Seen on real Nova 34: builder.flavor m1.small, verify.flavor m1.large, a parent with
    # min_ram 4096: exit 1 after the config ISO and the volume were made.
    full = cloud.build(cloud.spec(image={"min_ram": 4096}))
    assert full.exit_code == 0, full.why
    parent = full.success["image_id"]
    spec = cloud.spec(image={"min_ram": 2048}, builder={"flavor": "m1.small"},
                      verify={"flavor": "m1.large"})
    run = cloud.build(spec, extra=("--refresh", "always"))
    assert run.exit_code == 2, run.why
    assert ("builder.flavor: m1.small has 2048 MB RAM, less than the min_ram (4096 MB) of "
            "parent image ws2022-std-") in run.why and parent in run.why, run.why
    assert {e["kind"] for e in run.named("resource.created")} <= {"local"}
    assert cloud.leftovers(keep={parent}) == []


def test_a_refresh_whose_parent_was_rolled_back_meanwhile_is_not_promoted(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    # An operator rolls the family back (`osbuild images rollback`) while a refresh of the
    # current image runs: promoting the refresh would undo the rollback with a patched copy
    # of the very image rolled back from. It fails at promote instead (exit 1); the image
    # rolled back to stays current and the refreshed one stays hidden, verified, for
    # `osbuild images promote ID`.
    spec = cloud.spec()
    full = cloud.build(spec)
    assert full.exit_code == 0, full.why
    first = cloud.build(spec, extra=("--refresh", "always"))
    assert first.exit_code == 0, first.why
    parent = first.success["image_id"]

    def choose_then_roll_back(conn: Any, *args: Any, **kwargs: Any) -> Any:
        choice = choose(conn, *args, **kwargs)
        rollback(cloud.sim.connect(), "ws2022-standard")
        return choice

    monkeypatch.setattr("osbuild.unattended.jobs.choose", choose_then_roll_back)
    run = cloud.build(spec, extra=("--refresh", "always"))
    assert run.exit_code == 1, run.why
    assert _kind(run)["parent_image_id"] == parent
    assert run.failure["stage"] == "promote", run.failure
    assert f"parent image {first.success['image_name']} ({parent}) is no longer" in run.why
    assert full.success["image_id"] in run.why, run.why
    assert not run.named("image.promoted")
    assert _current(cloud) == full.success["image_id"]
    [child] = [e["id"] for e in run.named("resource.created") if e["kind"] == "image"
               and e["name"].endswith("-image")]
    kept = _image(cloud, child)
    assert kept["os_hidden"] is True and kept[naming.PROP_VERIFY] == "passed"
    assert naming.CURRENT_TAG not in kept["tags"]
    # Named as the build would have named it: `images promote` knows no spec.
    build_id = run.named("build.started")[0]["build_id"]
    assert kept["name"] == load_spec(spec).image_name_for(build_id), kept["name"]
    assert f"osbuild images promote {child}" in run.why, run.why
    assert cloud.leftovers(keep={full.success["image_id"], parent, child}) == []


def test_a_local_target_family_refreshes_on_a_volume_and_uploads_it(cloud: Cloud) -> None:
    # The builder of a refresh is always volume-backed (a copy of the image): its capture is
    # Cinder's upload, never Nova's createImage of a volume-backed server (an image that
    # points at volume snapshots and holds no data).
    spec = cloud.spec("ws2019-core-local.yaml", updates={"enabled": True})
    full = cloud.build(spec)
    assert full.exit_code == 0, full.why
    refresh = cloud.build(spec, extra=("--refresh", "always"))
    assert refresh.exit_code == 0, refresh.why
    child = _image(cloud, refresh.success["image_id"])
    assert child[naming.PROP_BUILD_KIND] == "refresh"
    assert "block_device_mapping" not in child and child["size"], child
    assert cloud.leftovers(keep={full.success["image_id"], refresh.success["image_id"]}) == []


def _stage_seconds(run: dict[str, Any], stage: str) -> float:
    report = json.loads(Path(run["report"]).read_text())
    [entry] = [s for s in report["stages"] if s["stage"] == stage]
    return float(entry["finished"] - entry["started"])


def test_a_refresh_updates_for_a_month_the_full_build_for_years(family: Family) -> None:
    # The full build installs from Server 2022's 2021 media and stages nearly every
    # component serviced since; the refresh, on last month's patch level, a month's share
    # (osbuild_sim/servicing.py).
    full = _stage_seconds(family.full.success, "updates")
    refresh = _stage_seconds(family.refresh.success, "updates")
    # The full build's first pass alone stages for at least the model's low bound.
    assert full > servicing.FULL_STAGING[0] * 0.99 / WORK_PACE, full
    assert refresh < full / 1.8, (refresh, full)

