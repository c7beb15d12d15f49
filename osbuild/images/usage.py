"""Which servers of the project use which image: booted from it, or from a volume made of it."""

from __future__ import annotations

from collections import defaultdict

from osbuild.cloud import compute
from osbuild.cloud import volumes as volume_api
from osbuild.cloud.connect import Connection


def image_users(conn: Connection) -> dict[str, set[str]]:
    """Image id -> ids of the servers that depend on it.

    A volume-backed server shows no image of its own; its boot volume's
    ``volume_image_metadata`` names the image the volume was made from, and deleting that
    image would break rebuilds and the provenance of the volume.
    """
    users: dict[str, set[str]] = defaultdict(set)
    for server in compute.servers(conn):
        if server.image_id:
            users[server.image_id].add(server.id)
    for volume in volume_api.volumes(conn):
        if not volume.source_image_id:
            continue
        for server_id in volume.attached_to:
            users[volume.source_image_id].add(server_id)
    return dict(users)
