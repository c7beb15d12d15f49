"""Cinder: the builder's volumes, their image metadata, upload-to-image, types and limits."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openstack.connection import Connection

from osbuild.cloud.clock import session_clock
from osbuild.cloud.compute import limits_of
from osbuild.cloud.retry import retrying


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    status: str  # available, in-use, error, uploading...
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None
    # the image it was made from (``volume_image_metadata.image_id``), if any
    source_image_id: str | None = None
    attached_to: tuple[str, ...] = ()  # server ids


def _attached_server(attachment: Any) -> str | None:
    if isinstance(attachment, dict):
        value = attachment.get("server_id")
    else:
        value = getattr(attachment, "server_id", None)
    return str(value) if value else None


def _volume(raw: Any) -> Volume:
    image_meta = getattr(raw, "volume_image_metadata", None) or {}
    servers = (_attached_server(a) for a in getattr(raw, "attachments", None) or [])
    return Volume(id=str(raw.id), name=str(raw.name or ""), status=str(raw.status or ""),
                  metadata=dict(getattr(raw, "metadata", None) or {}),
                  created_at=getattr(raw, "created_at", None),
                  source_image_id=str(image_meta["image_id"]) if image_meta.get("image_id")
                  else None,
                  attached_to=tuple(s for s in servers if s))


def get_volume(conn: Connection, volume_id: str, *,
               cancel: threading.Event | None = None) -> Volume:
    return _volume(retrying(conn.block_storage.get_volume, volume_id,
                            clock=session_clock(conn), cancel=cancel))


def volumes(conn: Connection, *, name: str | None = None,
            cancel: threading.Event | None = None) -> list[Volume]:
    """The project's volumes (with details), or those named ``name``."""
    query: dict[str, Any] = {"details": True}
    if name is not None:
        query["name"] = name
    found = retrying(lambda: list(conn.block_storage.volumes(**query)), listing=True,
                     clock=session_clock(conn), cancel=cancel)
    return [_volume(v) for v in found]


def create_volume(conn: Connection, **args: Any) -> Volume:
    """POST /volumes once (``args`` as openstacksdk's create_volume takes them)."""
    return _volume(conn.block_storage.create_volume(**args))


def set_bootable(conn: Connection, volume_id: str, *,
                 cancel: threading.Event | None = None) -> None:
    retrying(conn.block_storage.set_volume_bootable_status, volume_id, True,
             clock=session_clock(conn), cancel=cancel)


def set_image_metadata(conn: Connection, volume_id: str, metadata: Mapping[str, str], *,
                       cancel: threading.Event | None = None) -> None:
    """Cinder os-set_image_metadata: what Nova builds the machine from, and what
    upload-to-image carries into the image."""
    retrying(lambda: conn.block_storage.set_volume_image_metadata(volume_id, **metadata),
             clock=session_clock(conn), cancel=cancel)


def upload_to_image(conn: Connection, volume_id: str, image_name: str, *,
                    disk_format: str, visibility: str = "private") -> str:
    """Cinder upload-to-image once; the new Glance image's id."""
    # The stubs resolve to the volume v2 proxy, which lacks visibility (API 3.1+).
    api: Any = conn.block_storage
    reply = api.upload_volume_to_image(volume_id, image_name, disk_format=disk_format,
                                       container_format="bare", visibility=visibility)
    return str(reply["image_id"])


def type_exists(conn: Connection, name_or_id: str, *,
                cancel: threading.Event | None = None) -> bool:
    return retrying(conn.block_storage.find_type, name_or_id, ignore_missing=True,
                    clock=session_clock(conn), cancel=cancel) is not None


def user_message(conn: Connection, volume_id: str, *,
                 cancel: threading.Event | None = None) -> str:
    """Cinder puts no reason on a volume in error; its user messages say what happened."""
    try:
        # User messages exist from volume API 3.3; the SDK's messages() sends no version.
        reply = retrying(lambda: conn.block_storage.get("/messages",
                                                        microversion="3.3").json(),
                         clock=session_clock(conn), cancel=cancel)
    except Exception:
        return ""
    for message in reply.get("messages", []):
        if message.get("resource_uuid") == volume_id:
            return str(message.get("user_message") or "")
    return ""


def absolute_limits(conn: Connection, *,
                    cancel: threading.Event | None = None) -> dict[str, Any]:
    """Cinder's absolute limits (``maxTotalVolumes``...); {} where the cloud hides them."""
    return limits_of(lambda: conn.block_storage.get_limits(), conn, cancel)
