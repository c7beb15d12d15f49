"""Temporary Glance images a build uploads (config ISO, blank root disk) and deletes again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from osbuild import naming
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
    images: Any = conn.image  # the stubs know no extra properties as keyword arguments
    name = naming.resource_name(ctx.build_id, role)
    labels = {**naming.labels(ctx.build_id, ctx.spec.name, role), **(properties or {})}

    def lookup() -> Any:
        found = list(conn.image.images(name=name))
        return found[0] if found else None

    image = create_behind_lookup(
        ctx,
        lambda: images.create_image(
            name=name, disk_format=disk_format, container_format="bare",
            visibility="private", allow_duplicates=True, **labels,
        ),
        lookup,
        what=f"the {role} image",
    )
    image_id = str(image.id)
    ctx.track("image", image_id, name,
              lambda: delete_image(conn, image_id))
    ctx.call(conn.image.update_image, image_id, is_hidden=True)
    ctx.call(images.add_tag, image_id, naming.TAG)
    # A PUT of the whole data: safe to repeat.
    ctx.call(_put_data, conn, image_id, data)
    wait_for_status(
        ctx, lambda: conn.image.get_image(image_id), want="active",
        failures=("killed", "deleted"),
        deadline=Deadline.after(ctx.clock, timeout, f"{role} image upload"),
        what=f"{role} image {image_id}",
    )
    return image_id


def _put_data(conn: Connection, image_id: str, data: Path | bytes) -> None:
    def put(body: Any) -> Any:
        return conn.image.put(
            f"/images/{image_id}/file",
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            raise_exc=False,
        )

    if isinstance(data, bytes):
        response = put(data)
    else:
        with data.open("rb") as stream:  # streamed: an ISO is never held in memory
            response = put(stream)
    sdk_exc.raise_from_response(response, error_message="image upload refused")
