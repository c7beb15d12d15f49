"""Which servers of the project use which image: booted from it, or from a volume made of it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from openstack.connection import Connection

from osbuild.cloud.clock import session_clock
from osbuild.cloud.retry import retrying


def _field(value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


def image_users(conn: Connection) -> dict[str, set[str]]:
    """Image id -> ids of the servers that depend on it.

    A volume-backed server shows no image of its own; its boot volume's
    ``volume_image_metadata`` names the image the volume was made from, and deleting that
    image would break rebuilds and the provenance of the volume.
    """
    users: dict[str, set[str]] = defaultdict(set)
    servers = retrying(lambda: list(conn.compute.servers(details=True)), clock=session_clock(conn),
                       listing=True)
    for server in servers:
        image_id = _field(server.image, "id")
        if image_id:
            users[str(image_id)].add(str(server.id))
    volumes = retrying(lambda: list(conn.block_storage.volumes(details=True)), listing=True,
                       clock=session_clock(conn))
    for volume in volumes:
        image_id = (volume.volume_image_metadata or {}).get("image_id")
        if not image_id:
            continue
        for attachment in volume.attachments or []:
            server_id = _field(attachment, "server_id")
            if server_id:
                users[str(image_id)].add(str(server_id))
    return dict(users)
