"""Upload the config ISO to Glance: private, hidden, tagged, deleted at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from osbuild import naming
from osbuild.build.clock import Deadline
from osbuild.build.context import BuildContext
from osbuild.build.create import create_behind_lookup
from osbuild.build.waits import wait_for_status
from osbuild.cloud.delete import delete_image


class UploadConfigIso:
    name = "upload-config"

    def run(self, ctx: BuildContext) -> None:
        media = ctx.require(ctx.media, "media")
        conn = ctx.conn
        # openstacksdk's stubs know no extra image properties as keyword arguments.
        images: Any = conn.image
        name = naming.resource_name(ctx.build_id, "config")
        labels = naming.labels(ctx.build_id, ctx.spec.name, "config")

        def lookup():  # type: ignore[no-untyped-def]
            found = list(conn.image.images(name=name))
            return found[0] if found else None

        image = create_behind_lookup(
            ctx,
            lambda: images.create_image(
                name=name, disk_format="iso", container_format="bare",
                visibility="private", allow_duplicates=True, **labels,
            ),
            lookup,
            what="the config ISO image",
        )
        ctx.track("image", image.id, name,
                  lambda: delete_image(conn, image.id, time_scale=ctx.options.time_scale))
        ctx.config_image_id = image.id
        ctx.call(conn.image.update_image, image.id, is_hidden=True)
        ctx.call(images.add_tag, image.id, naming.TAG)
        # A PUT of the whole file: safe to repeat.
        ctx.call(_put_data, conn, image.id, media.iso_path)
        wait_for_status(
            ctx, lambda: conn.image.get_image(image.id), want="active",
            failures=("killed", "deleted"),
            deadline=Deadline.after(ctx.clock, 1800, "config ISO upload"),
            what=f"config ISO image {image.id}",
        )


def _put_data(conn: Connection, image_id: str, path: Path) -> None:
    with path.open("rb") as data:
        response = conn.image.put(
            f"/images/{image_id}/file",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            raise_exc=False,
        )
    sdk_exc.raise_from_response(response, error_message="config ISO upload refused")
