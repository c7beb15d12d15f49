"""A resumed build's Windows password, for redaction only: it is never stored, so it is read
back from where it still is (the rendered media, else the config ISO in Glance)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from osbuild.cloud import images as image_api
from osbuild.cloud.retry import ClientError, SDKError
from osbuild.errors import InvalidInput
from osbuild.media import configiso, layout, unattend
from osbuild.media.render import rendered_passwords
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName

UNRECOVERED = ("the build's Windows password could not be recovered for redaction (its "
               "rendered media and its config image are gone): what the guest prints is "
               "redacted by its shape only")


def recover_password(ctx: BuildContext, config_image_id: str | None) -> bool:
    """Teach ``ctx.redactor`` the password in the build's answer file; False (and one
    warning) when neither the work dir's media nor the config image holds it."""
    found = rendered_passwords(ctx.workdir / "media")
    if found is None and config_image_id:
        found = _from_config_image(ctx, config_image_id)
    if not found:
        ctx.emit(EventName.WARNING, message=UNRECOVERED)
        return False
    ctx.redactor.add(*found)
    return True


def _from_config_image(ctx: BuildContext, image_id: str) -> set[str] | None:
    """The answer file's passwords, read from a private copy of the config ISO that is
    removed at once; None when the image is gone or unreadable."""
    # mkdtemp's 0700: the copy holds the password while it is read.
    with tempfile.TemporaryDirectory(prefix="config-", dir=ctx.workdir) as tmp:
        iso_file = Path(tmp) / "config.iso"
        try:
            image_api.download_image(ctx.conn, image_id, iso_file, cancel=ctx.cancel.event)
            answer = configiso.read_config_file(iso_file, layout.ANSWER_FILE)
        except (SDKError, ClientError, InvalidInput, OSError):
            return None
    return unattend.answer_file_passwords(answer) if answer is not None else None
