"""A resumed build learns its Windows password (never stored) from the media it left in its
work dir, else from its config ISO in Glance, before any step reads the guest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.errors import BuildFailed
from osbuild.media import layout
from osbuild.media.render import TREE_DIR, generate_password, render_media
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.recover_password import UNRECOVERED, recover_password
from osbuild.pipeline.resume import restore
from osbuild.redact import REDACTED
from osbuild.unattended.state import BuildState
from tests.pipeline.test_runner import make_ctx

BUILD_ID = "20260101t000000-abcdef"  # make_ctx's


def _ctx(tmp_path: Path, conn: Any) -> tuple[BuildContext, list[str]]:
    ctx = make_ctx(tmp_path / "logs")
    ctx.conn = conn
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message")))
                      if e.name is EventName.WARNING else None)
    return ctx, warnings


def _render(ctx: BuildContext, out_dir: Path, password: str) -> Path:
    return render_media(ctx.spec, out_dir, build_id=BUILD_ID, password=password).iso_path


def _upload(conn: Any, iso: Path) -> str:
    image = image_api.create_image(conn, name=f"osbuild-{BUILD_ID}-config", disk_format="iso")
    image_api.put_data(conn, image.id, iso)
    return image.id


def _state(steps_done: list[str], resources: dict[str, str],
           records: dict[str, Any] | None = None) -> BuildState:
    return BuildState(build_id=BUILD_ID, family="unit", cloud="c", spec_path="s",
                      spec_digest="d", steps_done=steps_done, resources=resources,
                      records=records or {})


def test_the_password_comes_from_the_media_left_in_the_work_dir(tmp_path: Path,
                                                                 conn: Any) -> None:
    ctx, warnings = _ctx(tmp_path, conn)
    password = generate_password()
    assert ctx.redactor.text(password) == password
    _render(ctx, ctx.workdir / "media", password)
    # No config image: the work dir alone is enough, nothing is downloaded.
    assert recover_password(ctx, "00000000-0000-4000-8000-000000000000")
    assert ctx.redactor.text(f"net user Administrator {password}") == \
        f"net user Administrator {REDACTED}"
    assert warnings == []


def test_the_password_comes_from_the_config_image_when_the_work_dir_is_gone(
        tmp_path: Path, conn: Any) -> None:
    ctx, warnings = _ctx(tmp_path, conn)
    password = generate_password()
    image_id = _upload(conn, _render(ctx, tmp_path / "elsewhere", password))
    # Through restore: a full build past its config upload, as `osbuild resume` sees it.
    state = _state(["render", "preflight", "upload-config"], {"image:config": image_id})
    restore(ctx, state, steps=[])
    assert ctx.redactor.text(password) == REDACTED
    assert warnings == []
    # The downloaded copy (it holds the password) is gone again.
    assert list((ctx.workdir / naming.MEDIA_DIR).iterdir()) == []


def test_a_copy_cut_short_by_a_killed_resume_is_read_again_from_glance(
        tmp_path: Path, conn: Any) -> None:
    ctx, warnings = _ctx(tmp_path, conn)
    password = generate_password()
    iso = _render(ctx, tmp_path / "elsewhere", password)
    image_id = _upload(conn, iso)
    partial = ctx.workdir / naming.MEDIA_DIR / iso.name
    partial.parent.mkdir()
    partial.write_bytes(iso.read_bytes()[:20000])
    # ... and an answer file cut short (a disk that filled up while rendering).
    answer = ctx.workdir / naming.MEDIA_DIR / TREE_DIR / layout.ANSWER_FILE
    answer.parent.mkdir(parents=True)
    answer.write_text("<unattend><settings>")
    assert recover_password(ctx, image_id)
    assert ctx.redactor.text(password) == REDACTED
    assert warnings == [] and not partial.exists()


def test_neither_source_resumes_with_one_warning_that_names_no_secret(
        tmp_path: Path, conn: Any) -> None:
    ctx, warnings = _ctx(tmp_path, conn)
    password = generate_password()
    image_id = _upload(conn, _render(ctx, tmp_path / "elsewhere", password))
    conn.image.delete_image(image_id)
    assert not recover_password(ctx, image_id)
    assert warnings == [UNRECOVERED]
    assert ctx.redactor.text(password) == password  # only the shape rules are left
    assert "password=" + REDACTED in ctx.redactor.guest_text(f"password={password}")


def test_a_refresh_and_a_build_before_its_upload_have_nothing_to_recover(
        tmp_path: Path, conn: Any) -> None:
    ctx, warnings = _ctx(tmp_path, conn)
    refresh = _state(["render", "preflight", "upload-config"], {},
                     {"parent": {"image_id": "p", "name": "unit-v1", "generation": 0,
                                 "min_disk": 40, "inputs": {}, "provenance": {},
                                 "reason": "--refresh always"}})
    restore(ctx, refresh, steps=[])
    restore(ctx, _state(["render"], {}), steps=[])  # started over: a new password
    assert warnings == []


def test_after_the_install_nothing_is_downloaded_and_nothing_said(tmp_path: Path,
                                                                  conn: Any) -> None:
    # The cleanup stage took the password out of the image before sysprep: verify's guest
    # cannot print it, so a resume past the install has nothing to redact it from.
    ctx, warnings = _ctx(tmp_path, conn)
    password = generate_password()
    image_id = _upload(conn, _render(ctx, tmp_path / "elsewhere", password))
    done = ["render", "preflight", "upload-config", "volumes", "boot", "lock-check",
            "install"]
    restore(ctx, _state(done, {"image:config": image_id}), steps=[])
    assert ctx.redactor.text(password) == password  # the config image was not read
    assert not (ctx.workdir / naming.MEDIA_DIR).exists()
    conn.image.delete_image(image_id)  # and its absence is no cause for a password warning
    # (with it gone, nothing the build left is in the cloud: that build cannot resume)
    with pytest.raises(BuildFailed, match="nothing it left is in the cloud any more"):
        restore(ctx, _state(done, {"image:config": image_id}), steps=[])
    assert warnings == []
