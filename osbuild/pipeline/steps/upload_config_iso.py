"""Upload the config ISO to Glance: private, hidden, tagged, deleted at the end."""

from __future__ import annotations

from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.resumable import Resumable, Saved, StartOver
from osbuild.pipeline.runner import Step
from osbuild.pipeline.temp_image import upload_temporary_image

CONFIG_IMAGE = "image:config"  # its key in the state's resources


class UploadConfigIso(Resumable):
    name = "upload-config"

    def run(self, ctx: BuildContext) -> None:
        media = ctx.require(ctx.media, "media")
        ctx.config_image_id = upload_temporary_image(
            ctx, role="config", disk_format="iso", data=media.iso_path)

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        # Before this, the build had created nothing worth going on from.
        if not saved.done:
            raise StartOver("the build had not uploaded its config ISO; starting it over")
        ctx.config_image_id = saved.resources.get(CONFIG_IMAGE)
        return None
