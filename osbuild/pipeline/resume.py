"""Re-attaching to a build whose orchestrator died: its state file and the builder by tag."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild import naming
from osbuild.cloud import delete as cloud_delete
from osbuild.cloud import images as image_api
from osbuild.cloud.clock import CancelToken
from osbuild.cloud.connect import Connection
from osbuild.errors import BuildFailed, InvalidInput, OsbuildError
from osbuild.images.family import current_of, list_family
from osbuild.images.refresh import Parent, install_provenance
from osbuild.pipeline.context import BuildContext, BuildOptions, state_key
from osbuild.pipeline.events import EventBus, EventName
from osbuild.pipeline.recover_password import recover_password
from osbuild.pipeline.resumable import Resumable, Saved, StartOver
from osbuild.pipeline.run import (
    KIND_RECORD,
    PARENT_RECORD,
    BuildResult,
    execute,
    new_context,
    steps_for,
)
from osbuild.pipeline.runner import Step
from osbuild.pipeline.steps.capture_image import CAPTURED_IMAGE
from osbuild.pipeline.steps.promote_image import PromoteImage
from osbuild.pipeline.steps.upload_config_iso import CONFIG_IMAGE, UploadConfigIso
from osbuild.pipeline.steps.watch_install import WatchInstall
from osbuild.spec import BuildSpec, load_spec
from osbuild.unattended.gc import Resource, discover
from osbuild.unattended.process import osbuild_alive
from osbuild.unattended.state import BuildState, StateStore


def load_resumable(store: StateStore, build_id: str, *,
                   force: bool = False) -> tuple[BuildState, BuildSpec]:
    """The build's state and spec, refusing builds that finished, run, or whose spec changed
    (unless ``force``: then the spec as it is now finishes the build)."""
    state = store.load(build_id)
    if state.is_finished:
        raise InvalidInput([f"build {build_id} already {state.status.value}; "
                            "nothing to resume"])
    if state.pid != os.getpid() and osbuild_alive(state):
        raise InvalidInput([f"build {build_id} is still running (pid {state.pid})"])
    spec = load_spec(Path(state.spec_path))
    if spec.digest != state.spec_digest and not force:
        raise InvalidInput([
            f"{state.spec_path} changed since build {build_id} started (comments and "
            "layout aside); its builder was set up from the old spec. Either:",
            f"  finish it with the spec as it is now: osbuild resume {build_id} --force",
            "  or delete what it left and build again: osbuild gc --older-than 0, then "
            f"osbuild build {state.spec_path}",
            "  (or put the spec back as it was and resume)",
        ])
    return state, spec


def resume_build(state: BuildState, spec: BuildSpec, conn: Connection, *, store: StateStore,
                 options: BuildOptions, bus: EventBus | None = None,
                 cancel: CancelToken | None = None,
                 cloud_name: str | None = None, os_cloud: str | None = None) -> BuildResult:
    """Adopt what the build created, run the steps it had not finished, clean up."""
    ctx = new_context(spec, conn, options=options, bus=bus, cancel=cancel,
                      cloud_name=cloud_name, build_id=state.build_id)
    ctx.os_cloud = os_cloud
    ctx.store = store
    store.update(state.build_id, pid=os.getpid(), host=socket.gethostname())
    try:
        steps: Sequence[Step] = restore(ctx, state)
    except Exception as exc:
        # Failed as a step does (build.failed, the report, the state, cleanup of what was
        # adopted and the rendered media), not with a bare error and a state left running.
        steps = [_CannotResume(exc)]
    else:
        _warn_if_parent_moved(ctx, state)
    # The whole build's clock: its duration and builder.timeout count from its first start.
    return execute(ctx, steps, resumed=state.started_at)


def _warn_if_parent_moved(ctx: BuildContext, state: BuildState) -> None:
    """Said up front: a resumed refresh whose parent is no longer current (a rollback while
    its osbuild was dead) still runs its install, capture and boot test, and its promotion
    then keeps the image hidden (PromoteImage checks again, and decides)."""
    parent = ctx.parent
    if parent is None or PromoteImage.name in state.steps_done:
        return
    try:
        current = current_of(list_family(ctx.conn, ctx.spec.name, with_usage=False))
    except OsbuildError:
        return  # only a warning: the promotion reads it again
    if current is None or current.id == parent.image_id:
        return
    ctx.emit(EventName.WARNING, message=(
        f"the refresh's parent {parent.name} ({parent.image_id}) is no longer the current "
        f"image of {ctx.spec.name} (now: {current.name} ({current.id})): the refresh goes on, "
        "and its image will stay hidden, for osbuild images promote"))


def restore(ctx: BuildContext, state: BuildState,
            steps: Sequence[Resumable] | None = None) -> list[Step]:
    """Fill ``ctx`` from the state and return the steps still to run."""
    _adopt_resources(ctx, state)
    parent = state.records.get(PARENT_RECORD)
    if parent:
        ctx.parent = _parent(ctx, parent)  # a refresh: its own list of steps
    ctx.kind_reason = str((state.records.get(KIND_RECORD) or parent or {}).get("reason") or "")
    todo = steps_to_resume(ctx, state, steps_for(ctx.parent) if steps is None else steps)
    # Before any step reads the guest: what it prints of the password is then redacted.
    # A refresh's media carry no answer file and no password (render_media, refresh=True).
    # After the install nothing left reads a guest that knows it: the cleanup stage removed
    # the password and the cached answer files before sysprep, and verify boots that image.
    if (ctx.parent is None and UploadConfigIso.name in state.steps_done
            and WatchInstall.name not in state.steps_done):
        recover_password(ctx, state.resources.get(CONFIG_IMAGE))
    return todo


def _parent(ctx: BuildContext, record: dict[str, Any]) -> Parent:
    """The refresh's parent; a state written before the parent's ISO provenance was recorded
    gets it from the parent image in Glance, so the published image still names its ISOs."""
    parent = Parent.from_record(record)
    if "provenance" in record:
        return parent
    image = image_api.find_image(ctx.conn, parent.image_id, cancel=ctx.cancel.event)
    if image is None:
        ctx.emit(EventName.WARNING, message=(
            f"the parent image {parent.image_id} is gone and the build's state does not "
            "record its ISO provenance: the image is published without "
            f"{', '.join(naming.INSTALL_PROVENANCE)}"))
        return parent
    parent = replace(parent, provenance=install_provenance(dict(image.properties)))
    ctx.save_record(PARENT_RECORD, provenance=parent.provenance)
    return parent


def steps_to_resume(ctx: BuildContext, state: BuildState,
                    steps: Sequence[Resumable]) -> list[Step]:
    """Each step takes back what it recorded, in order, and says what is left to run."""
    done = set(state.steps_done)
    todo: list[Step] = []
    try:
        for step in steps:
            saved = Saved(done=step.name in done, record=state.records.get(step.name, {}),
                          resources=state.resources, released=frozenset(state.released))
            then = step.resume(ctx, saved)
            if then is not None:
                todo.append(then)
    except StartOver as exc:
        ctx.emit(EventName.WARNING, message=str(exc))
        return list(steps)
    return todo


class _CannotResume:
    """The one step of a resume whose build cannot go on: it raises why."""

    name = "resume"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def run(self, ctx: BuildContext) -> None:
        raise self.error


def _adopt_resources(ctx: BuildContext, state: BuildState) -> None:
    """Track everything on record so the runner deletes it like its own (the product kept);
    a build whose resources something else deleted (another host's gc) cannot resume."""
    conn = ctx.conn
    media_dir = ctx.workdir / naming.MEDIA_DIR  # the answer file: recover_password
    ctx.track("local", str(media_dir), "rendered config media",
              lambda: shutil.rmtree(media_dir, ignore_errors=True), announce=False)
    deleters: dict[str, Callable[[str], None]] = {
        "server": lambda i: cloud_delete.delete_server(conn, i),
        "volume": lambda i: cloud_delete.delete_volume(conn, i),
        "image": lambda i: cloud_delete.delete_image(conn, i),
        # The boot test's: a resumed verify deletes it before it imports a new one.
        "keypair": lambda i: cloud_delete.delete_keypair(conn, i),
    }
    for key, resource_id in state.resources.items():
        kind, _, role = key.partition(":")
        delete = deleters.get(kind)
        if delete is None:
            continue
        name = naming.resource_name(state.build_id, role)
        # What a step keeps (its image) it marks again when it resumes.
        ctx.track(kind, resource_id, name, _bound(delete, resource_id), announce=False)
        ctx.emit(EventName.RESOURCE_ADOPTED, kind=kind, id=resource_id, name=name)
    found, _props, _fresh = discover(conn, datetime.now(UTC))
    _check_still_there(ctx, state, [r for r in found if r.build_id == state.build_id],
                       set(deleters))
    _adopt_unrecorded(ctx, state, deleters, found)


def _check_still_there(ctx: BuildContext, state: BuildState, found: list[Resource],
                       kinds: set[str]) -> None:
    """Fail when nothing the build left is in the cloud any more, or its captured image
    is gone (the product of the steps still to run); warn about anything else missing."""
    present = {r.id for r in found}
    recorded = {key: rid for key, rid in state.resources.items()
                if key.partition(":")[0] in kinds}
    missing = {key: rid for key, rid in recorded.items() if rid not in present}
    if not missing:
        return
    listed = ", ".join(_described(state.build_id, key, rid) for key, rid in missing.items())
    gone = ("deleted outside this build: by another host's `osbuild gc` once this "
            "build's heartbeat had gone stale, or by hand")
    if not found or CAPTURED_IMAGE in missing:
        what = "nothing it left is" if not found else "its captured image is"
        raise BuildFailed(f"{what} in the cloud any more ({listed}), {gone}; nothing to "
                          "resume, the build is marked failed", stage="resume")
    ctx.emit(EventName.WARNING, message=f"no longer in the cloud: {listed}, {gone}")


def _described(build_id: str, key: str, resource_id: str) -> str:
    kind, _, role = key.partition(":")
    return f"{kind} {naming.resource_name(build_id, role)} ({resource_id})"


def _adopt_unrecorded(ctx: BuildContext, state: BuildState,
                      deleters: dict[str, Callable[[str], None]],
                      found: list[Resource]) -> None:
    """What the build created but died before recording: found by name, tag or label.

    The builder server is adopted as the builder; anything else is deleted at the end.
    """
    recorded = set(state.resources.values())
    for resource in found:
        if resource.build_id != state.build_id or resource.id in recorded:
            continue
        if resource.kind == "port":
            continue  # Nova's, deleted with the server
        role_key = state_key(state.build_id, resource.kind, resource.name)
        ctx.track(resource.kind, resource.id, resource.name,
                  _bound(deleters[resource.kind], resource.id), announce=False)
        if role_key == "server:builder":
            state.resources[role_key] = resource.id
        ctx.emit(EventName.RESOURCE_ADOPTED, kind=resource.kind, id=resource.id,
                 name=resource.name, recorded=False)


def _bound(delete: Callable[[str], None], resource_id: str) -> Callable[[], None]:
    return lambda: delete(resource_id)
