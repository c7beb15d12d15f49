"""Creating osbuild-labelled resources directly with openstacksdk, for gc and lock tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from osbuild import naming
from osbuild.unattended import lock

BOOT_IMAGE = "ops-test-boot"


def public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def image(conn: Any, name: str, **props: Any) -> Any:
    return conn.image.create_image(
        name=name, data=b"\0" * 1024, disk_format="raw", container_format="bare",
        allow_duplicates=True, **props,
    )


def server(conn: Any, build_id: str, family: str, heartbeat: datetime | None) -> Any:
    """A builder as the orchestrator tags it, booted from a plain raw image."""
    metadata = naming.labels(build_id, family, "builder")
    if heartbeat is not None:
        metadata[naming.PROP_HEARTBEAT] = lock.format_heartbeat(heartbeat)
    network = conn.network.find_network("private")
    boot = conn.image.find_image(BOOT_IMAGE)
    return conn.compute.create_server(
        name=naming.resource_name(build_id, "builder"),
        flavor_id=conn.compute.find_flavor("m1.small").id,
        image_id=boot.id,
        networks=[{"uuid": network.id}],
        tags=[naming.TAG, naming.build_tag(build_id)],
        metadata=metadata,
    )


def volume(conn: Any, build_id: str, role: str) -> Any:
    return conn.block_storage.create_volume(
        size=1, name=naming.resource_name(build_id, role),
        metadata=naming.labels(build_id, "ws2022", role),
    )
