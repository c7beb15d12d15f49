"""A resumed build's Windows password, for redaction only: it is never stored, so it is read
back from where it still is (the rendered media, else the config ISO in Glance)."""

from __future__ import annotations

from pathlib import Path

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.retry import ClientError, SDKError
from osbuild.errors import InvalidInput
from osbuild.media import configiso, layout, unattend
from osbuild.media.render import ISO_NAME, rendered_passwords
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName

UNRECOVERED = ("the build's Windows password could not be recovered for redaction (its "
               "rendered media and its config image are gone): what the guest prints is "
               "redacted by its shape only")


def recover_password(ctx: BuildContext, config_image_id: str | None) -> bool:
    """Teach ``ctx.redactor`` the password in the build's answer file; False (and one
    warning) when neither the work dir's media nor the config image holds it."""
    media_dir = ctx.workdir / naming.MEDIA_DIR
    found = rendered_passwords(media_dir)
    if not found and config_image_id:  # none, or an answer file cut short
        found = _from_config_image(ctx, config_image_id, media_dir)
    if not found:
        ctx.emit(EventName.WARNING, message=UNRECOVERED)
        return False
    ctx.redactor.add(*found)
    return True


def _from_config_image(ctx: BuildContext, image_id: str, media_dir: Path) -> set[str] | None:
    """The answer file's passwords, read from a copy of the config ISO that is removed at
    once; None when the image is gone or unreadable. The copy goes where the rendered ISO
    was: a resume killed while reading it leaves it to the media's cleanup."""
    media_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    iso_file = media_dir / ISO_NAME
    try:
        image_api.download_image(ctx.conn, image_id, iso_file, cancel=ctx.cancel.event)
        answer = configiso.read_config_file(iso_file, layout.ANSWER_FILE)
    except (SDKError, ClientError, InvalidInput, OSError):
        return None
    finally:
        iso_file.unlink(missing_ok=True)
    return unattend.answer_file_passwords(answer) if answer is not None else None
