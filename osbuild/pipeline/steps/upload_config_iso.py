"""Upload the config ISO to Glance: private, hidden, tagged, deleted at the end."""

from __future__ import annotations

from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.temp_image import upload_temporary_image


class UploadConfigIso:
    name = "upload-config"

    def run(self, ctx: BuildContext) -> None:
        media = ctx.require(ctx.media, "media")
        ctx.config_image_id = upload_temporary_image(
            ctx, role="config", disk_format="iso", data=media.iso_path)
