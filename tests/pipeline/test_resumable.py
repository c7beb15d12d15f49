"""Steps declare what they record for `osbuild resume`; resume takes it back with no name switch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.errors import InvalidInput
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.resume import restore, steps_to_resume
from osbuild.pipeline.run import build_steps, execute
from osbuild.pipeline.runner import Step
from osbuild.pipeline.steps.claim_family import ClaimFamily
from osbuild.pipeline.steps.publish_image import provenance
from osbuild.unattended.state import STATE_VERSION, BuildState, StateStore
from tests.pipeline.test_runner import make_ctx

BUILD_ID = "20260101t000000-abcdef"


class CountSheep(Resumable):
    """A step no code in resume knows about: it records a count and takes it back."""

    name = "count-sheep"

    def __init__(self) -> None:
        self.restored: Saved | None = None

    def run(self, ctx: BuildContext) -> None:
        ctx.save_record(self.name, started=True)  # progress, while it runs

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        return {"sheep": 42}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        self.restored = saved
        return None if saved.done else self


class Fails(Resumable):
    name = "fails"

    def run(self, ctx: BuildContext) -> None:
        raise RuntimeError("the orchestrator died here")


def _with_store(tmp_path: Path) -> BuildContext:
    ctx = make_ctx(tmp_path)
    ctx.store = StateStore(tmp_path / "state")
    ctx.store.create(BuildState(build_id=BUILD_ID, family="unit", cloud="c", spec_path="s",
                                spec_digest="d"))
    return ctx


def test_a_new_steps_record_round_trips_through_resume(tmp_path: Path) -> None:
    ctx = _with_store(tmp_path)
    assert ctx.store is not None
    result = execute(ctx, [CountSheep(), Fails()])
    assert not result.succeeded
    state = ctx.store.load(BUILD_ID)
    assert state.steps_done == ["count-sheep"]
    assert state.records["count-sheep"] == {"started": True, "sheep": 42}

    again = [CountSheep(), Fails()]
    todo = steps_to_resume(make_ctx(tmp_path), state, again)
    assert again[0].restored == Saved(done=True, record={"started": True, "sheep": 42},
                                      resources={})
    assert todo == [again[1]]


# What osbuild wrote before steps declared their records (state version 1): a build killed
# while watching the install.
_VERSION_1: dict[str, Any] = {
    "version": 1, "build_id": BUILD_ID, "family": "unit", "cloud": "osbuild-sim",
    "os_cloud": "osbuild-sim", "status": "running", "step": "install",
    "steps_done": ["render", "preflight", "upload-config", "volumes", "boot", "lock-check"],
    "nonce": "f" * 32, "spec_path": "/specs/unit.yaml", "spec_digest": "ab" * 32,
    "fingerprint": None,
    "resources": {"image:config": "img-cfg", "volume:iso": "v-iso", "volume:virtio": "v-vio",
                  "volume:config": "v-cfg", "volume:config-2": "v-cfg2",
                  "server:builder": "srv-1"},
    "image_id": None, "transcript_path": None, "transcript_position": 812,
    "last_stage": "winpe", "sysprep_reached": False,
    "host": "h", "pid": 1, "started_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:05:00Z", "error": None,
    "resolved": {
        "windows_iso": {"id": "w", "name": "win.iso", "size": 5, "checksum": "c1",
                        "properties": {}},
        "virtio_iso": {"id": "v", "name": "virtio.iso", "size": 5, "checksum": "c2",
                       "properties": {}},
        "flavor_id": "f1", "flavor_name": "m1.large", "flavor_vcpus": 4, "flavor_ram": 8192,
        "network_id": None, "volume_type": None, "availability_zone": None,
    },
    "guest_stages": ["drivers", "updates"], "config_iso_size": 2048, "log_dir": "/logs",
}


def _store_with(tmp_path: Path, data: dict[str, Any]) -> StateStore:
    store = StateStore(tmp_path / "state")
    store.ensure()
    store.path_for(BUILD_ID).write_text(json.dumps(data))
    return store


def test_a_version_1_state_resumes_where_it_stopped(tmp_path: Path) -> None:
    state = _store_with(tmp_path, _VERSION_1).load(BUILD_ID)
    assert state.version == STATE_VERSION
    ctx = make_ctx(tmp_path)
    todo = steps_to_resume(ctx, state, build_steps())
    assert [s.name for s in todo] == ["install", "capture", "release", "publish", "verify",
                                      "promote"]
    assert ctx.resumed_media is not None
    assert (ctx.resumed_media.nonce, ctx.resumed_media.guest_stages,
            ctx.resumed_media.size) == ("f" * 32, ("drivers", "updates"), 2048)
    assert ctx.resolved is not None and ctx.resolved.windows_iso.checksum == "c1"
    assert ctx.resolved.flavor_name == "m1.large"
    assert ctx.config_image_id == "img-cfg" and ctx.server_id == "srv-1"
    assert ctx.volumes is not None and ctx.volumes.config_iso == "v-cfg2"  # the recreated one
    assert ctx.resumed_stage == "winpe" and not ctx.sysprep_reached


def test_a_resumed_build_that_holds_the_family_lock_claims_it_again_first(
        tmp_path: Path) -> None:
    # Its claim went stale with the dead run (or gc deleted it): the resumed build stamps
    # or recreates it before anything else, and does not contest it (its cloud guard has
    # just found no other build of the family).
    state = _store_with(tmp_path, _VERSION_1).load(BUILD_ID)
    todo = steps_to_resume(make_ctx(tmp_path, lock_family=True), state, build_steps())
    assert [s.name for s in todo] == ["claim", "install", "capture", "release", "publish",
                                      "verify", "promote"]
    assert isinstance(todo[0], ClaimFamily) and todo[0].contest is False


def test_a_build_that_had_not_uploaded_its_config_starts_over(tmp_path: Path) -> None:
    data = {**_VERSION_1, "steps_done": ["render", "preflight"], "step": "upload-config"}
    state = _store_with(tmp_path, data).load(BUILD_ID)
    ctx = make_ctx(tmp_path)
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message"))))
    steps = build_steps()
    assert steps_to_resume(ctx, state, steps) == steps
    assert warnings == ["the build had not uploaded its config ISO; starting it over"]


def test_a_state_from_a_newer_osbuild_is_refused_clearly(tmp_path: Path) -> None:
    store = _store_with(tmp_path, {**_VERSION_1, "version": STATE_VERSION + 1})
    with pytest.raises(InvalidInput, match="written by a newer osbuild"):
        store.load(BUILD_ID)


_PAST_RELEASE = {**BuildState.model_validate(_VERSION_1).model_dump(mode="json"),
                 "step": "publish", "image_id": "img-1",
                 "steps_done": [*_VERSION_1["steps_done"], "install", "capture", "release"],
                 "resources": {"image:image": "img-1"},
                 "released": ["volume:iso", "volume:virtio", "volume:config", "volume:target",
                              "image:config"]}


def test_a_build_past_its_release_resumes_without_the_builders_volumes(tmp_path: Path) -> None:
    # The release step deleted the builder's volumes (and forgot them) once the captured
    # image was on record: a resume goes on from publish, needing none of them.
    state = _store_with(tmp_path, _PAST_RELEASE).load(BUILD_ID)
    ctx = make_ctx(tmp_path)
    todo = steps_to_resume(ctx, state, build_steps())
    assert [s.name for s in todo] == ["publish", "verify", "promote"]
    assert ctx.image_id == "img-1"


def test_a_volume_gone_without_being_released_is_still_an_input_error(tmp_path: Path) -> None:
    # Released are the ISO volumes only: the config volume's absence is unexplained.
    state = _store_with(tmp_path, {**_PAST_RELEASE, "released": [
        "volume:iso", "volume:virtio", "volume:target"]}).load(BUILD_ID)
    with pytest.raises(InvalidInput, match="the state records no config volume"):
        steps_to_resume(make_ctx(tmp_path), state, build_steps())


def test_a_version_2_state_past_its_release_step_reads_as_released(tmp_path: Path) -> None:
    # osbuild writing version 2 deleted the builder's volumes in its release step without
    # noting it; such a build, resumed by this version, still needs none of them.
    version_2 = {k: v for k, v in _PAST_RELEASE.items() if k != "released"}
    state = _store_with(tmp_path, {**version_2, "version": 2}).load(BUILD_ID)
    assert state.version == STATE_VERSION
    assert "volume:target" in state.released
    todo = steps_to_resume(make_ctx(tmp_path), state, build_steps())
    assert [s.name for s in todo] == ["publish", "verify", "promote"]
    before_release = {**version_2, "version": 2, "step": "capture",
                      "steps_done": [*_VERSION_1["steps_done"], "install"]}
    assert _store_with(tmp_path, before_release).load(BUILD_ID).released == []


def test_finished_volumes_the_state_does_not_record_are_an_input_error(tmp_path: Path) -> None:
    resources = {k: v for k, v in _VERSION_1["resources"].items()
                 if not k.startswith("volume:")}
    state = _store_with(tmp_path, {**_VERSION_1, "resources": resources}).load(BUILD_ID)
    with pytest.raises(InvalidInput, match="the state records no iso, virtio, config volume"):
        steps_to_resume(make_ctx(tmp_path), state, build_steps())


# A refresh killed while watching its install, written before the parent record carried the
# parent's ISO provenance (commit e7620e4): its "parent" has no "provenance" key.
def _old_refresh_state(parent_id: str) -> dict[str, Any]:
    return {
        "version": 2, "build_id": BUILD_ID, "family": "unit", "cloud": "osbuild-sim",
        "os_cloud": "osbuild-sim", "status": "running", "step": "install",
        "steps_done": ["render", "preflight", "upload-config", "volumes", "boot",
                       "lock-check"],
        "spec_path": "/specs/unit.yaml", "spec_digest": "ab" * 32, "resources": {},
        "records": {"parent": {"image_id": parent_id, "name": "unit-v1", "generation": 0,
                               "min_disk": 40, "inputs": {"osbuild_fingerprint": "fp"},
                               "reason": "--refresh always"}},
        "host": "h", "pid": 1, "started_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:05:00Z",
    }


_PARENT_PROVENANCE = {naming.PROP_WINDOWS_ISO_ID: "iso-win", naming.PROP_VIRTIO_ISO_ID: "iso-vio",
                      naming.PROP_EDITION: "Windows Server 2022 SERVERSTANDARD"}


def _restored(tmp_path: Path, conn: Any, parent_id: str) -> tuple[BuildContext, list[str]]:
    store = _store_with(tmp_path, _old_refresh_state(parent_id))
    ctx = make_ctx(tmp_path)
    ctx.conn = conn
    ctx.store = store
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message")))
                      if e.name is EventName.WARNING else None)
    restore(ctx, store.load(BUILD_ID), steps=[])
    return ctx, warnings


def test_an_old_refresh_state_takes_the_iso_provenance_from_the_parent_image(
        tmp_path: Path, conn: Any) -> None:
    parent = conn.image.create_image(name="unit-v1", disk_format="qcow2",
                                     container_format="bare", **_PARENT_PROVENANCE)
    ctx, warnings = _restored(tmp_path, conn, parent.id)
    assert ctx.parent is not None and ctx.parent.provenance == _PARENT_PROVENANCE
    # Such a state kept the reason in the parent's record; newer ones in the kind record.
    assert ctx.kind_reason == "--refresh always"
    published = provenance(ctx)  # what the publish step gives the image
    assert {k: published[k] for k in _PARENT_PROVENANCE} == _PARENT_PROVENANCE
    assert warnings == []
    # Recorded: a second resume need not ask Glance.
    assert ctx.store is not None
    assert ctx.store.load(BUILD_ID).records["parent"]["provenance"] == _PARENT_PROVENANCE


def test_an_old_refresh_state_whose_parent_is_gone_publishes_without_it_and_says_so(
        tmp_path: Path, conn: Any) -> None:
    ctx, warnings = _restored(tmp_path, conn, "8d0c1f6e-0000-4000-8000-000000000000")
    assert ctx.parent is not None and ctx.parent.provenance == {}
    assert not set(provenance(ctx)) & set(naming.INSTALL_PROVENANCE)
    assert len(warnings) == 1
    assert "8d0c1f6e-0000-4000-8000-000000000000 is gone" in warnings[0]
    assert naming.PROP_WINDOWS_ISO_ID in warnings[0]
