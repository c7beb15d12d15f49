"""Re-attaching to a build whose orchestrator died: its state file and the builder by tag."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from openstack.connection import Connection

from osbuild import markers, naming
from osbuild.cloud import delete as cloud_delete
from osbuild.cloud.clock import CancelToken, Deadline
from osbuild.cloud.retry import is_not_found
from osbuild.errors import InvalidInput
from osbuild.pipeline.context import (
    BuildContext,
    BuilderVolumes,
    BuildOptions,
    MediaFacts,
    state_key,
)
from osbuild.pipeline.events import EventBus, EventName
from osbuild.pipeline.run import BuildResult, build_steps, execute, new_context
from osbuild.pipeline.runner import Step
from osbuild.pipeline.steps.capture_image import CaptureImage
from osbuild.pipeline.steps.preflight import IsoImage, Resolved
from osbuild.pipeline.steps.verify_image import VerifyImage
from osbuild.pipeline.waits import wait_for_status
from osbuild.spec import BuildSpec, load_spec
from osbuild.unattended.gc import discover, pid_alive
from osbuild.unattended.state import BuildState, StateStore

# Steps that only prepare (locally, or the config ISO): a build that had not finished them
# starts over under its id; what it had created is adopted and cleaned up at the end.
_PREPARATION = ("render", "preflight", "upload-config")
_VOLUME_ROLES = ("iso", "virtio", "config", "target")


def load_resumable(store: StateStore, build_id: str, *,
                   force: bool = False) -> tuple[BuildState, BuildSpec]:
    """The build's state and spec, refusing builds that finished, run, or whose spec changed
    (unless ``force``: then the spec as it is now finishes the build)."""
    state = store.load(build_id)
    if state.is_finished:
        raise InvalidInput([f"build {build_id} already {state.status.value}; "
                            "nothing to resume"])
    if (state.host == socket.gethostname() and state.pid != os.getpid()
            and pid_alive(state.pid)):
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
    steps = restore(ctx, state)
    return execute(ctx, steps, resumed=True)


def restore(ctx: BuildContext, state: BuildState) -> list[Step]:
    """Fill ``ctx`` from the state and return the steps still to run."""
    _adopt_resources(ctx, state)
    done = set(state.steps_done)
    if not all(name in done for name in _PREPARATION) or state.resolved is None:
        ctx.emit(EventName.WARNING, message="the build had not uploaded its config ISO; "
                 "starting it over")
        return build_steps()
    ctx.resolved = _resolved(state.resolved)
    ctx.resumed_media = MediaFacts(state.nonce, tuple(state.guest_stages or ()),
                                   state.config_iso_size or 0)
    resources = state.resources
    ctx.config_image_id = resources.get("image:config")
    ctx.root_image_id = resources.get("image:root")
    if "volumes" in done:
        ctx.volumes = _volumes(resources)
    ctx.server_id = resources.get("server:builder")
    ctx.sysprep_reached = state.sysprep_reached or _transcript_shows_sysprep(state)
    ctx.resumed_stage = state.last_stage
    ctx.image_id = resources.get("image:image") or state.image_id

    steps: list[Step] = []
    for step in build_steps():
        if step.name in done or step.name in _PREPARATION:
            continue
        if step.name == "boot" and ctx.server_id and _exists(ctx, ctx.server_id):
            continue  # the builder is up: watch it rather than boot another
        if step.name == CaptureImage.name and ctx.image_id:
            steps.append(AdoptCapture())
            continue
        steps.append(step)
    return steps


def _resolved(data: dict[str, object]) -> Resolved:
    fields = dict(data)
    windows = IsoImage(**fields.pop("windows_iso"))  # type: ignore[arg-type]
    virtio = IsoImage(**fields.pop("virtio_iso"))  # type: ignore[arg-type]
    return Resolved(windows_iso=windows, virtio_iso=virtio, **fields)  # type: ignore[arg-type]


def _volumes(resources: dict[str, str]) -> BuilderVolumes:
    by_role: dict[str, str] = {}
    for role in _VOLUME_ROLES:
        # A volume recreated after an error carries "-2"; the later one is the one in use.
        for key in (f"volume:{role}", f"volume:{role}-2"):
            if key in resources:
                by_role[role] = resources[key]
    missing = [r for r in ("iso", "virtio", "config") if r not in by_role]
    if missing:
        raise InvalidInput([f"the state records no {', '.join(missing)} volume"])
    return BuilderVolumes(by_role["iso"], by_role["virtio"], by_role["config"],
                          by_role.get("target"))


def _adopt_resources(ctx: BuildContext, state: BuildState) -> None:
    """Track everything on record so the runner deletes it like its own (the product kept)."""
    conn = ctx.conn
    media_dir = ctx.workdir / "media"  # the answer file with the password, if it survived
    ctx.track("local", str(media_dir), "rendered config media",
              lambda: shutil.rmtree(media_dir, ignore_errors=True), announce=False)
    deleters: dict[str, Callable[[str], None]] = {
        "server": lambda i: cloud_delete.delete_server(conn, i),
        "volume": lambda i: cloud_delete.delete_volume(conn, i),
        "image": lambda i: cloud_delete.delete_image(conn, i),
    }
    for key, resource_id in state.resources.items():
        kind, _, role = key.partition(":")
        delete = deleters.get(kind)
        if delete is None:
            continue
        name = naming.resource_name(state.build_id, role)
        tracked = ctx.track(kind, resource_id, name, _bound(delete, resource_id),
                            keep_on_success=key == "image:image", announce=False)
        # A verified image outlives any later failure (as in VerifyImage).
        tracked.keep_on_failure = key == "image:image" and VerifyImage.name in state.steps_done
        ctx.emit(EventName.RESOURCE_ADOPTED, kind=kind, id=resource_id, name=name)
    _adopt_unrecorded(ctx, state, deleters)


def _adopt_unrecorded(ctx: BuildContext, state: BuildState,
                      deleters: dict[str, Callable[[str], None]]) -> None:
    """What the build created but died before recording: found by name, tag or label.

    The builder server is adopted as the builder; anything else is deleted at the end.
    """
    conn = ctx.conn
    deleters = {
        **deleters,
        "keypair": lambda i: cloud_delete.delete_keypair(conn, i),
    }
    recorded = set(state.resources.values())
    found, _props, _fresh = discover(conn, datetime.now(UTC))
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


def _transcript_shows_sysprep(state: BuildState) -> bool:
    """The transcript on disk holds every marker the dead watcher saw (and some it did not)."""
    if not state.transcript_path or not state.nonce:
        return False
    try:
        lines = Path(state.transcript_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(m.stage == "sysprep" and m.status is markers.Status.START
               for m in markers.parse_lines(lines, state.nonce))


def _exists(ctx: BuildContext, server_id: str) -> bool:
    try:
        ctx.call(ctx.conn.compute.get_server, server_id)
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise
    return True


class AdoptCapture:
    """The capture had started: wait for that image instead of capturing a second one."""

    name = CaptureImage.name

    def run(self, ctx: BuildContext) -> None:
        image_id = ctx.require(ctx.image_id, "image_id")
        deadline = Deadline.after(ctx.clock, ctx.spec.builder.stage_timeouts.capture,
                                  "capture")
        image = wait_for_status(
            ctx, lambda: ctx.conn.image.get_image(image_id), want="active",
            failures=("killed", "deleted"), deadline=deadline,
            what=f"captured image {image_id}",
        )
        target = ctx.volumes.target if ctx.volumes else None
        if target:
            # Cinder marks the volume available again when the upload has finished.
            wait_for_status(
                ctx, lambda: ctx.conn.block_storage.get_volume(target), want="available",
                failures=("error",), deadline=deadline, what=f"target volume {target} upload",
            )
        ctx.image_properties = {k: str(v) for k, v in (image.properties or {}).items()}
