"""Render the config ISO locally (answer file, scripts, cloudbase-init config)."""

from __future__ import annotations

import shutil
from typing import Any

from osbuild import naming
from osbuild.media.render import generate_password, render_media
from osbuild.pipeline.context import BuildContext, MediaFacts
from osbuild.pipeline.resumable import Resumable, Saved, StartOver
from osbuild.pipeline.runner import Step


class RenderConfig(Resumable):
    name = "render"

    def run(self, ctx: BuildContext) -> None:
        out_dir = ctx.workdir / naming.MEDIA_DIR
        # The rendered tree holds the answer file with the build's Windows password:
        # it is removed at the end of the build whatever happens.
        ctx.track("local", str(out_dir), "rendered config media",
                  lambda: shutil.rmtree(out_dir, ignore_errors=True))
        resolved = ctx.resolved
        password = generate_password()
        ctx.redactor.add(password)  # every output redacts it wherever a guest shows it
        ctx.media = render_media(ctx.spec, out_dir, build_id=ctx.build_id, password=password,
                                 install_image=resolved.install_image if resolved else None,
                                 refresh=ctx.parent is not None)

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        # The facts the cloud steps use, never the media (it holds the password).
        facts = ctx.media_facts()
        return {"nonce": facts.nonce, "guest_stages": list(facts.guest_stages),
                "config_iso_size": facts.size}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        if not saved.done or not saved.record.get("nonce"):
            raise StartOver("the build had not uploaded its config ISO; starting it over")
        ctx.resumed_media = MediaFacts(str(saved.record["nonce"]),
                                       tuple(saved.record.get("guest_stages") or ()),
                                       int(saved.record.get("config_iso_size") or 0))
        return None
