"""Turn the installed disk into a Glance image.

Volume target (and every refresh, whose builder boots a copy of the image): delete the
server (keeping the target volume) and let Cinder upload the volume to Glance; a Nova
snapshot of a volume-backed server would be a zero-byte image pointing at Cinder snapshots,
usable only inside this cloud. Local target: Nova createImage of the powered-off server.
"""

from __future__ import annotations

from typing import Any

from osbuild import naming
from osbuild.cloud import compute
from osbuild.cloud import images as image_api
from osbuild.cloud import volumes as volume_api
from osbuild.cloud.clock import Deadline
from osbuild.cloud.delete import delete_image
from osbuild.cloud.retry import is_not_found
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.create import create_behind_lookup
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.pipeline.waits import wait_for_status

CAPTURED_IMAGE = "image:image"  # its key in the state's resources


class CaptureImage(Resumable):
    name = "capture"

    def run(self, ctx: BuildContext) -> None:
        deadline = capture_deadline(ctx)
        name = naming.resource_name(ctx.build_id, "image")
        # Whatever builder.target says, a refresh's builder boots from a volume.
        if ctx.volumes is not None and ctx.volumes.target:
            image_id = self._upload_volume(ctx, name, deadline)
        else:
            image_id = self._snapshot_server(ctx, name)
        image = wait_for_status(
            ctx, lambda: _captured_image(ctx, image_id), want="active",
            failures=("killed", "deleted"), deadline=deadline,
            what=f"captured image {image_id}", on_failure=lambda _: _why_capture_failed(ctx),
        )
        ctx.image_id = image.id
        ctx.image_properties = {k: str(v) for k, v in image.properties.items()}

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        return {"image_id": ctx.image_id}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        ctx.image_id = saved.resources.get(CAPTURED_IMAGE) or saved.record.get("image_id")
        image = ctx.find_resource("image", ctx.image_id) if ctx.image_id else None
        if image is not None:
            image.keep_on_success = True  # the build's product, as in _track
        if saved.done:
            return None
        return AdoptCapture() if ctx.image_id else self

    def _lookup(self, ctx: BuildContext, name: str) -> str | None:
        found = image_api.images(ctx.conn, name=name, cancel=ctx.cancel.event)
        return found[0].id if found else None

    def _track(self, ctx: BuildContext, image_id: str, name: str) -> None:
        # The image is the build's product: kept on success, deleted on failure.
        ctx.track("image", image_id, name,
                  lambda: delete_image(ctx.conn, image_id),
                  keep_on_success=True)
        # Hidden from default listings until the boot test has passed and it is promoted.
        image_api.update_image(ctx.conn, image_id, is_hidden=True, cancel=ctx.cancel.event)

    def _upload_volume(self, ctx: BuildContext, name: str, deadline: Deadline) -> str:
        conn = ctx.conn
        volumes = ctx.require(ctx.volumes, "volumes")
        target = ctx.require(volumes.target, "target volume")
        server = ctx.find_resource("server", ctx.require(ctx.server_id, "server_id"))
        if server is not None and not server.done:
            # Deleting the server detaches the target volume (delete_on_termination=False).
            ctx.delete_now(server)
        wait_for_status(
            ctx, lambda: volume_api.get_volume(conn, target,
                                               cancel=ctx.cancel.event), want="available",
            failures=("error",), deadline=deadline, what=f"target volume {target}",
        )
        image_id = create_behind_lookup(
            ctx,
            lambda: volume_api.upload_to_image(conn, target, name,
                                               disk_format=ctx.spec.image.disk_format),
            lambda: self._lookup(ctx, name),
            what="the image upload",
        )
        self._track(ctx, image_id, name)
        # The volume goes back to available when Cinder has finished uploading; only then
        # can its step delete it.
        wait_for_status(
            ctx, lambda: volume_api.get_volume(conn, target,
                                               cancel=ctx.cancel.event), want="available",
            failures=("error",), deadline=deadline, what=f"target volume {target} upload",
        )
        return str(image_id)

    def _snapshot_server(self, ctx: BuildContext, name: str) -> str:
        conn = ctx.conn
        server_id = ctx.require(ctx.server_id, "server_id")
        metadata = naming.labels(ctx.build_id, ctx.spec.name, "image")
        image_id = create_behind_lookup(
            ctx,
            lambda: compute.create_server_image(conn, server_id, name, metadata),
            lambda: self._lookup(ctx, name),
            what="the server snapshot",
        )
        self._track(ctx, image_id, name)
        return str(image_id)


def capture_deadline(ctx: BuildContext) -> Deadline:
    return Deadline.after(ctx.clock, ctx.spec.builder.stage_timeouts.capture, "capture",
                          setting="builder.stage_timeouts.capture")


def _captured_image(ctx: BuildContext, image_id: str) -> image_api.Image:
    """The captured image; one that is gone reads as ``deleted``: when an upload fails,
    Glance puts the image back to queued and Cinder deletes it (real services; a killed
    image is what a failed direct upload leaves)."""
    try:
        return image_api.get_image(ctx.conn, image_id, cancel=ctx.cancel.event)
    except Exception as exc:
        if is_not_found(exc):
            return image_api.Image(id=image_id, name="", status="deleted")
        raise


def _why_capture_failed(ctx: BuildContext) -> str:
    """What Cinder said about the target volume's upload (its user messages), or what Nova
    recorded of the builder's snapshot (its instance actions), if anything."""
    target = ctx.volumes.target if ctx.volumes is not None else None
    if target:
        said = volume_api.user_message(ctx.conn, target, cancel=ctx.cancel.event)
        return f"Cinder says: {said}" if said else ""
    if not ctx.server_id:
        return ""
    snapshot = compute.last_action(ctx.conn, ctx.server_id, "createImage",
                                   cancel=ctx.cancel.event)
    return snapshot.why_failed(ctx.server_id) if snapshot is not None else ""


class AdoptCapture:
    """The capture had started: wait for that image instead of capturing a second one."""

    name = CaptureImage.name

    def run(self, ctx: BuildContext) -> None:
        image_id = ctx.require(ctx.image_id, "image_id")
        deadline = capture_deadline(ctx)
        image = wait_for_status(
            ctx, lambda: _captured_image(ctx, image_id), want="active",
            failures=("killed", "deleted"), deadline=deadline,
            what=f"captured image {image_id}", on_failure=lambda _: _why_capture_failed(ctx),
        )
        target = ctx.volumes.target if ctx.volumes else None
        if target:
            # Cinder marks the volume available again when the upload has finished.
            wait_for_status(
                ctx, lambda: volume_api.get_volume(ctx.conn, target,
                                                   cancel=ctx.cancel.event), want="available",
                failures=("error",), deadline=deadline, what=f"target volume {target} upload",
            )
        ctx.image_properties = {k: str(v) for k, v in image.properties.items()}
