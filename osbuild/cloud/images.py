"""Glance: images as small typed records; uploads, updates, tags, members and usage.

The image API is Glance v2 (tags, members and ``os_hidden`` are v2 only). openstacksdk's
annotations are narrower than what it accepts (extra properties as keywords, file objects
as data), so the proxy is used untyped here and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from osbuild.cloud.clock import session_clock
from osbuild.cloud.retry import retrying, status_of


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    status: str  # queued, saving, active, killed, deleted...
    # Properties openstacksdk does not map to attributes of its own (osbuild_*, the spec's).
    properties: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    visibility: str = ""
    hidden: bool = False
    protected: bool = False
    created_at: str | None = None
    size: int = 0
    virtual_size: int | None = None  # the disk's size; None until Glance inspects the data
    min_disk: int = 0  # GB; a volume made from the image must be at least this big
    min_ram: int = 0  # MB; Nova boots the image (or a volume made from it) on no less
    disk_format: str = ""
    # The data's hash: Glance's multihash, and the legacy md5 (osbuild/unattended/fingerprint)
    hash_algo: str = ""
    hash_value: str = ""
    checksum: str = ""


def _image(raw: Any) -> Image:
    return Image(id=str(raw.id), name=str(raw.name or ""), status=str(raw.status or ""),
                 properties=dict(getattr(raw, "properties", None) or {}),
                 tags=tuple(getattr(raw, "tags", None) or ()),
                 visibility=str(getattr(raw, "visibility", None) or ""),
                 hidden=bool(getattr(raw, "is_hidden", False)),
                 protected=bool(getattr(raw, "is_protected", False)),
                 created_at=getattr(raw, "created_at", None),
                 size=int(getattr(raw, "size", None) or 0),
                 virtual_size=(int(raw.virtual_size)
                               if getattr(raw, "virtual_size", None) is not None else None),
                 min_disk=int(getattr(raw, "min_disk", None) or 0),
                 min_ram=int(getattr(raw, "min_ram", None) or 0),
                 disk_format=str(getattr(raw, "disk_format", None) or ""),
                 hash_algo=str(getattr(raw, "hash_algo", None) or ""),
                 hash_value=str(getattr(raw, "hash_value", None) or ""),
                 checksum=str(getattr(raw, "checksum", None) or ""))


def _api(conn: Connection) -> Any:
    return conn.image


def get_image(conn: Connection, image_id: str, *,
              cancel: threading.Event | None = None) -> Image:
    return _image(retrying(_api(conn).get_image, image_id, clock=session_clock(conn),
                           cancel=cancel))


def find_image(conn: Connection, name_or_id: str, *,
               cancel: threading.Event | None = None) -> Image | None:
    """The image named or numbered ``name_or_id``, or None; several of that name raise
    openstacksdk's DuplicateResource."""
    raw = retrying(_api(conn).find_image, name_or_id, ignore_missing=True,
                   clock=session_clock(conn), cancel=cancel)
    return _image(raw) if raw is not None else None


def images(conn: Connection, *, cancel: threading.Event | None = None,
           **query: Any) -> list[Image]:
    """Glance's listing for ``query`` (name=, tag=, is_hidden=...); paging restarts when
    another build deletes the page marker meanwhile."""
    found = retrying(lambda: list(_api(conn).images(**query)), listing=True,
                     clock=session_clock(conn), cancel=cancel)
    return [_image(i) for i in found]


def update_image(conn: Connection, image_id: str, *, cancel: threading.Event | None = None,
                 **changes: Any) -> Image:
    """Set attributes (name=, visibility=, is_hidden=, min_disk=...) and properties."""
    return _image(retrying(lambda: _api(conn).update_image(image_id, **changes),
                           clock=session_clock(conn), cancel=cancel))


def add_tag(conn: Connection, image_id: str, tag: str, *,
            cancel: threading.Event | None = None) -> None:
    retrying(_api(conn).add_tag, image_id, tag, clock=session_clock(conn), cancel=cancel)


def remove_tag(conn: Connection, image_id: str, tag: str) -> None:
    """Remove once (no retry): a caller that must not be cut short decides what follows."""
    _api(conn).remove_tag(image_id, tag)


def add_member(conn: Connection, image_id: str, member: str, *,
               cancel: threading.Event | None = None) -> bool:
    """Share the image with project ``member``; False when it already was."""
    try:
        retrying(lambda: _api(conn).add_member(image_id, member=member),
                 clock=session_clock(conn), cancel=cancel)
    except sdk_exc.HttpException as exc:
        if status_of(exc) == 409:
            return False
        raise
    return True


def create_image(conn: Connection, *, name: str, disk_format: str,
                 visibility: str = "private", properties: Mapping[str, str] | None = None
                 ) -> Image:
    """POST /images once (no data yet): a private image record with string properties."""
    return _image(_api(conn).create_image(
        name=name, disk_format=disk_format, container_format="bare", visibility=visibility,
        allow_duplicates=True, **dict(properties or {})))


def upload_image(conn: Connection, *, name: str, path: Path, disk_format: str,
                 visibility: str = "private", properties: Mapping[str, str] | None = None,
                 wrap: Callable[[IO[bytes]], Any] | None = None) -> Image:
    """Create an image and stream ``path`` into it, once (an upload is not idempotent: the
    caller looks for what reached Glance before trying again). ``wrap`` wraps the open file
    (progress reporting)."""
    with path.open("rb") as stream:
        return _image(_api(conn).create_image(
            name=name, data=wrap(stream) if wrap is not None else stream,
            disk_format=disk_format, container_format="bare", allow_duplicates=True,
            visibility=visibility, **dict(properties or {})))


def download_image(conn: Connection, image_id: str, path: Path, *,
                   wrap: Callable[[IO[bytes]], Any] | None = None,
                   cancel: threading.Event | None = None) -> None:
    """Stream the image's data into ``path``; every attempt starts the file over (a reset
    mid-stream leaves a partial copy). ``wrap`` wraps the open file (progress reporting)."""
    def download() -> None:
        with path.open("wb") as raw:
            _api(conn).download_image(image_id, stream=True,
                                      output=wrap(raw) if wrap is not None else raw)

    retrying(download, clock=session_clock(conn), cancel=cancel)


def put_data(conn: Connection, image_id: str, data: Path | bytes, *,
             cancel: threading.Event | None = None) -> None:
    """Upload the image's whole data (a PUT: safe to repeat); a file is streamed."""
    def put() -> None:
        def send(body: Any) -> Any:
            return _api(conn).put(f"/images/{image_id}/file", data=body,
                                  headers={"Content-Type": "application/octet-stream"},
                                  raise_exc=False)

        if isinstance(data, bytes):
            response = send(data)
        else:
            with data.open("rb") as stream:  # an ISO is never held in memory
                response = send(stream)
        sdk_exc.raise_from_response(response, error_message="image upload refused")

    retrying(put, clock=session_clock(conn), cancel=cancel)


def usage(conn: Connection, *, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Glance's quota usage (``image_count_total``: limit and usage...); {} if not offered."""
    try:
        response = retrying(lambda: _api(conn).get("/info/usage"), clock=session_clock(conn),
                            cancel=cancel)
    except sdk_exc.HttpException:
        return {}
    if getattr(response, "status_code", 200) != 200:
        return {}
    try:
        return dict(response.json().get("usage") or {})
    except ValueError:
        return {}
