"""A refresh's volumes: the config ISO and the target disk copied from the parent image.

Cinder marks a volume created from an image bootable and copies the image's properties into
its image metadata, so the builder boots the parent's Windows like any instance of it.
"""

from __future__ import annotations

from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.steps.create_volumes import CreateVolumes, Wanted, config_volume


class CreateRefreshVolumes(CreateVolumes):
    needed = ("config", "target")

    def wanted(self, ctx: BuildContext) -> list[Wanted]:
        parent = ctx.require(ctx.parent, "parent")
        return [config_volume(ctx), Wanted("target", ctx.refresh_disk_gb, parent.image_id)]
