"""Render the config ISO locally (answer file, scripts, cloudbase-init config)."""

from __future__ import annotations

import shutil

from osbuild.media.render import render_media
from osbuild.pipeline.context import BuildContext


class RenderConfig:
    name = "render"

    def run(self, ctx: BuildContext) -> None:
        out_dir = ctx.workdir / "media"
        # The rendered tree holds the answer file with the build's Windows password:
        # it is removed at the end of the build whatever happens.
        ctx.track("local", str(out_dir), "rendered config media",
                  lambda: shutil.rmtree(out_dir, ignore_errors=True))
        ctx.media = render_media(ctx.spec, out_dir, build_id=ctx.build_id)
