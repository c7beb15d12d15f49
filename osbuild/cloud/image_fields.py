"""Which fields of a Glance image are Glance's own, and which a snapshot inherits by accident."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from osbuild.cloud.retry import retrying

# Set and managed by Glance (or the image schema): never copied, never removed.
GLANCE_FIELDS = frozenset({
    "id", "name", "status", "visibility", "protected", "size", "virtual_size", "checksum",
    "created_at", "updated_at", "tags", "self", "file", "schema", "owner", "container_format",
    "disk_format", "min_disk", "min_ram", "os_hidden", "os_hash_algo", "os_hash_value",
    "locations", "direct_url", "stores",
})
# Glance reserves this prefix (import bookkeeping); its keys cannot be changed.
GLANCE_RESERVED_PREFIX = "os_glance_"

# What Nova's createImage and openstacksdk's upload add, describing another image or
# instance: the snapshot's base image (deleted with the build), the builder, the uploader.
SNAPSHOT_INHERITED = frozenset({
    "image_type", "instance_uuid", "base_image_ref", "boot_roles", "image_location",
    "owner_project_name", "owner_user_name", "user_id", "owner_id",
})
SDK_UPLOAD_PREFIX = "owner_specified."


def is_glance_field(key: str) -> bool:
    return key in GLANCE_FIELDS or key.startswith(GLANCE_RESERVED_PREFIX)


def is_inherited(key: str) -> bool:
    return key in SNAPSHOT_INHERITED or key.startswith(SDK_UPLOAD_PREFIX)


Call = Callable[..., Any]


def custom_properties(conn: Connection, image_id: str, *, call: Call = retrying
                      ) -> dict[str, Any]:
    """The image's own properties, as Glance returns them (openstacksdk's Image splits them
    between typed attributes and ``properties``)."""
    def fetch() -> dict[str, Any]:
        # A raw GET does not raise: without this an error's body (a 500's code, title and
        # message) would read as the image's properties, and publish would remove them.
        response = conn.image.get(f"/images/{image_id}")
        sdk_exc.raise_from_response(response)
        return dict(response.json())

    body = call(fetch)
    return {key: value for key, value in body.items() if not is_glance_field(key)}


def remove_properties(conn: Connection, image_id: str, keys: list[str], *,
                      call: Call = retrying) -> None:
    """Remove properties with one JSON patch (openstacksdk's update cannot remove keys)."""
    if not keys:
        return
    patch = [{"op": "remove", "path": f"/{key}"} for key in sorted(keys)]
    headers = {"Content-Type": "application/openstack-images-v2.1-json-patch"}

    def send() -> None:
        response = conn.image.patch(f"/images/{image_id}", json=patch, headers=headers)
        sdk_exc.raise_from_response(response)

    call(send)
