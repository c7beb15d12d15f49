"""Temporary Glance images a build uploads (config ISO, blank root disk) and deletes again."""

from __future__ import annotations

from pathlib import Path

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.clock import Deadline
from osbuild.cloud.delete import delete_image
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.create import create_behind_lookup
from osbuild.pipeline.waits import wait_for_status


def upload_temporary_image(
    ctx: BuildContext,
    *,
    role: str,
    disk_format: str,
    data: Path | bytes,
    properties: dict[str, str] | None = None,
    timeout: float = 1800.0,
) -> str:
    """A private, hidden, tagged image holding ``data``, tracked for deletion; its id."""
    conn = ctx.conn
    cancel = ctx.cancel.event
    name = naming.resource_name(ctx.build_id, role)
    labels = {**naming.labels(ctx.build_id, ctx.spec.name, role), **(properties or {})}

    def lookup() -> image_api.Image | None:
        found = image_api.images(conn, name=name, cancel=cancel)
        return found[0] if found else None

    image = create_behind_lookup(
        ctx,
        lambda: image_api.create_image(conn, name=name, disk_format=disk_format,
                                       properties=labels),
        lookup,
        what=f"the {role} image",
    )
    image_id = str(image.id)
    ctx.track("image", image_id, name,
              lambda: delete_image(conn, image_id))
    image_api.update_image(conn, image_id, is_hidden=True, cancel=cancel)
    image_api.add_tag(conn, image_id, naming.TAG, cancel=cancel)
    image_api.put_data(conn, image_id, data, cancel=cancel)
    wait_for_status(
        ctx, lambda: image_api.get_image(conn, image_id,
                                         cancel=ctx.cancel.event), want="active",
        failures=("killed", "deleted"),
        deadline=Deadline.after(ctx.clock, timeout, f"{role} image upload"),
        what=f"{role} image {image_id}",
    )
    return image_id

