"""Prepare a Windows ISO already in Glance for prompt-less UEFI boot (download, patch, upload)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osbuild.cloud import images as image_api
from osbuild.cloud.clock import Deadline, session_clock
from osbuild.cloud.connect import Connection
from osbuild.cloud.delete import delete_image
from osbuild.cloud.image_fields import custom_properties, is_inherited
from osbuild.cloud.retry import ClientError, DuplicateResource, SDKError, is_transient
from osbuild.errors import CloudError, PreflightError, ResourceFailed
from osbuild.media import eltorito

NOPROMPT_PROPERTY = "osbuild_uefi_noprompt"
SOURCE_PROPERTY = "osbuild_uefi_source_image"

# (phase, done, total): phase is "download" or "upload".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PreparedImage:
    source_id: str
    source_name: str
    image_id: str
    image_name: str
    created: bool  # False when a prepared image of that name already existed


def noprompt_name(name: str) -> str:
    """``windows-server-2025-x64.iso`` -> ``windows-server-2025-x64-noprompt.iso``."""
    if name.lower().endswith(".iso"):
        return name[:-4] + "-noprompt" + name[-4:]
    return name + "-noprompt"


class _CountingWriter(io.RawIOBase):
    """A file wrapper that reports how much has been written (download progress)."""

    def __init__(self, target: io.BufferedWriter, total: int, progress: Progress | None) -> None:
        self._target = target
        self._total = total
        self._done = 0
        self._progress = progress

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = self._target.write(data)
        self._done += written
        if self._progress is not None:
            self._progress("download", self._done, self._total)
        return written


class _CountingReader(io.RawIOBase):
    """A file wrapper that reports how much has been read (upload progress)."""

    def __init__(self, source: io.BufferedReader, total: int, progress: Progress | None) -> None:
        self._source = source
        self._total = total
        self._done = 0
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        self._done += len(data)
        if self._progress is not None and data:
            self._progress("upload", self._done, self._total)
        return len(data)


def _custom_properties(conn: Connection, image_id: str) -> dict[str, str]:
    """The image's own properties (os_distro, hw_*, the operator's keys), to copy onto the
    prepared image; not what a snapshot or an upload inherited from elsewhere."""
    try:
        found = custom_properties(conn, image_id)
    except (SDKError, ClientError, ValueError) as exc:
        raise CloudError(f"image {image_id}: {exc}") from None
    return {
        key: str(value) for key, value in found.items()
        if not is_inherited(key) and isinstance(value, str | int | float | bool)
    }


def prepare_uefi_image(
    conn: Connection,
    image: str,
    *,
    new_name: str | None = None,
    work_dir: Path | None = None,
    force: bool = False,
    visibility: str = "private",
    progress: Progress | None = None,
    wait_seconds: float = 3600.0,
) -> PreparedImage:
    """Download Glance image ``image`` (name or ID), switch its EFI boot entry to
    efisys_noprompt.bin and upload the result as ``new_name`` (default: ``<name>-noprompt``)
    with property ``osbuild_uefi_noprompt=true``. Streams through one temporary file."""
    try:
        source = image_api.find_image(conn, image)
    except DuplicateResource:
        raise PreflightError([f"image {image!r}: several images have that name; give its ID"]) \
            from None
    except (SDKError, ClientError) as exc:
        raise CloudError(f"image {image!r}: {exc}") from None
    if source is None:
        raise PreflightError([f"image {image!r}: not found"])
    if source.disk_format != "iso":
        raise PreflightError(
            [f"image {source.name!r}: disk_format is {source.disk_format}, not iso"]
        )
    if source.status != "active":
        raise PreflightError([f"image {source.name!r}: status is {source.status}, not active"])
    properties = _custom_properties(conn, source.id)
    if str(properties.get(NOPROMPT_PROPERTY, "")).lower() == "true":
        raise PreflightError(
            [f"image {source.name!r}: already prepared ({NOPROMPT_PROPERTY}=true)"]
        )
    target_name = new_name or noprompt_name(source.name)
    if not force:
        existing = [
            found for found in image_api.images(conn, name=target_name)
            if str(found.properties.get(NOPROMPT_PROPERTY, "")).lower() == "true"
            and found.status == "active"
        ]
        if existing:
            return PreparedImage(source.id, source.name, existing[0].id, target_name, False)

    with tempfile.TemporaryDirectory(prefix="osbuild-uefi-", dir=work_dir) as tmp:
        path = Path(tmp) / "media.iso"
        total = source.size
        try:
            image_api.download_image(
                conn, source.id, path,
                wrap=lambda raw: _CountingWriter(raw, total, progress))  # type: ignore[arg-type]
        except (SDKError, ClientError) as exc:
            raise CloudError(f"image {source.name!r}: download failed: {exc}") from None
        with path.open("r+b") as fp:
            eltorito.patch_efi_entry(fp, name=f"image {source.name!r}")
        new_properties = dict(properties)
        new_properties.update({NOPROMPT_PROPERTY: "true", SOURCE_PROPERTY: source.id})
        size = path.stat().st_size

        def upload() -> image_api.Image:
            return image_api.upload_image(
                conn, name=target_name, path=path, disk_format="iso",
                # Not the source's: vendor media are often public, and publishing an
                # image is an admin-only policy on most clouds.
                visibility=visibility, properties=new_properties,
                wrap=lambda fp: _CountingReader(fp, size, progress))  # type: ignore[arg-type]

        try:
            created = _upload_behind_lookup(conn, upload, target_name, source.id)
            created = _wait_active(conn, created.id, target_name, wait_seconds)
        except (SDKError, ClientError) as exc:
            raise CloudError(f"image {target_name!r}: upload failed: {exc}") from None
    return PreparedImage(source.id, source.name, created.id, target_name, True)


def _ours(conn: Connection, name: str, source_id: str) -> list[image_api.Image]:
    """Images this preparation uploaded (same name, pointing at the same source)."""
    return [found for found in image_api.images(conn, name=name)
            if str(found.properties.get(SOURCE_PROPERTY, "")) == source_id]


def _upload_behind_lookup(conn: Connection, upload: Callable[[], image_api.Image], name: str,
                          source_id: str, attempts: int = 4) -> image_api.Image:
    """Upload, and after a transient failure adopt what reached Glance before uploading again.

    A connection reset can hide an upload that succeeded (seen against real Glance): an image
    that got its data is adopted; one left ``queued`` without data is deleted and replaced.
    """
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return upload()
        except Exception as exc:
            if not is_transient(exc):
                raise
            last = exc
        for found in _ours(conn, name, source_id):
            if found.status in ("active", "saving", "importing"):
                return found
            delete_image(conn, found.id)
        session_clock(conn).sleep(min(2.0 * 2**attempt, 30.0))
    raise CloudError(f"image {name!r}: upload failed: {last}")


def _wait_active(conn: Connection, image_id: str, name: str,
                 wait_seconds: float) -> image_api.Image:
    """Poll until Glance has the image; every status check goes through the retry policy."""
    clock = session_clock(conn)
    deadline = Deadline.after(clock, wait_seconds, f"image {name!r} upload")
    while True:
        image = image_api.get_image(conn, image_id)
        if image.status == "active":
            return image
        if image.status in ("killed", "deleted"):
            raise ResourceFailed(f"image {name!r}: upload failed: Glance marked it "
                                 f"{image.status}")
        if deadline.expired:
            raise ResourceFailed(f"image {name!r}: not active after {int(wait_seconds)}s "
                                 f"(status {image.status})")
        clock.sleep(2.0)
