"""Boot a refresh's builder from its copy of the current image, the config ISO attached.

No Windows installer and no WinRM: the parent image's cloudbase-init runs at the first boot
as SYSTEM and its UserDataPlugin starts the first-logon driver from the config ISO, which
runs the refresh's stages and reports on the serial port like a full build.
"""

from __future__ import annotations

import base64
from typing import Any

from osbuild.media.render import refresh_user_data
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.steps.boot_builder import CDROM, BootBuilder, target_mapping


class BootFromParent(BootBuilder):
    def mappings(self, ctx: BuildContext) -> tuple[list[dict[str, Any]], str | None]:
        volumes = ctx.require(ctx.volumes, "volumes")
        return [target_mapping(ctx, volumes.target),
                {**CDROM, "boot_index": -1, "uuid": volumes.config_iso}], None

    def extra_args(self, ctx: BuildContext) -> dict[str, Any]:
        # Nova takes user data base64-encoded (the SDK's proxy passes it as given). The config
        # drive carries it too, for cloudbase-init's ConfigDriveService: a builder without a
        # network (builder.network unset) reaches no metadata service.
        return {"user_data": base64.b64encode(refresh_user_data().encode()).decode("ascii"),
                "config_drive": True}
