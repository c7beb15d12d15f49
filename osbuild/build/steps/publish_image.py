"""Give the captured image its final name, properties, tags and visibility."""

from __future__ import annotations

from datetime import UTC, datetime

from osbuild import __version__, naming
from osbuild.build.context import BuildContext
from osbuild.build.steps.preflight import hardware_properties


def provenance(ctx: BuildContext) -> dict[str, str]:
    """Where the image came from, so an operator can trace and reproduce it."""
    resolved = ctx.require(ctx.resolved, "resolved")
    return {
        naming.PROP_FAMILY: ctx.spec.name,
        naming.PROP_BUILD_ID: ctx.build_id,
        "osbuild_version": __version__,
        "osbuild_spec_digest": ctx.spec.digest,
        "osbuild_windows_iso_id": resolved.windows_iso.id,
        "osbuild_windows_iso_checksum": resolved.windows_iso.checksum,
        "osbuild_virtio_iso_id": resolved.virtio_iso.id,
        "osbuild_virtio_iso_checksum": resolved.virtio_iso.checksum,
        "osbuild_build_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "osbuild_edition": ctx.spec.windows.image_name,
    }


class PublishImage:
    name = "publish"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        conn = ctx.conn
        image_id = ctx.require(ctx.image_id, "image_id")
        name = spec.image_name_for(ctx.build_id)
        properties = {
            **hardware_properties(ctx),
            **spec.image.properties,
            **provenance(ctx),
        }
        image = ctx.call(
            conn.image.update_image, image_id,
            name=name,
            visibility=spec.image.visibility,
            min_disk=spec.min_disk_gb,
            min_ram=spec.image.min_ram,
            **properties,
        )
        for tag in (naming.TAG, *spec.image.tags):
            ctx.call(conn.image.add_tag, image_id, tag)
        ctx.image_name = image.name or name
        ctx.image_properties = {k: str(v) for k, v in properties.items()}
