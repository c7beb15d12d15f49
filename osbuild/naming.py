"""How osbuild names, tags and labels what it creates, so that any run (resume, gc, images)
can find a build's resources again in Nova, Cinder, Glance and Neutron.

Convention (documented in the README for other tooling):

- names: ``osbuild-<build_id>-<role>`` for temporary resources (``builder``, ``iso``,
  ``virtio``, ``config``, ``target``, ``root``, ``verify``, ``claim``...).
- Nova servers: tags ``osbuild`` and ``osbuild-build-<build_id>``; metadata
  ``osbuild_build_id``, ``osbuild_family``, ``osbuild_role``, ``osbuild_heartbeat``.
- Cinder volumes and Glance images: metadata/properties ``osbuild_build_id``,
  ``osbuild_family``, ``osbuild_role``; Glance images also carry the tag ``osbuild``.
- Published images: ``osbuild_family``, ``osbuild_build_id``, ``osbuild_image_version``
  (sortable: the build id), ``osbuild_verify`` (``pending``, ``passed``, ``failed``,
  ``skipped``) and, for the family's current image, the tag :data:`CURRENT_TAG`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

TAG = "osbuild"
BUILD_TAG_PREFIX = "osbuild-build-"
CURRENT_TAG = "osbuild-current"
# `osbuild gc` leaves alone what is younger than this (a build's longest default run): a
# resource that young may belong to a build whose state lives on another host.
GC_OLDER_THAN = 6 * 3600.0
# The folder under a build's work dir (`<log dir>/<build id>/`) holding its rendered config
# media: the answer file with the build password, removed with the build's resources.
MEDIA_DIR = "media"

PROP_BUILD_ID = "osbuild_build_id"
PROP_FAMILY = "osbuild_family"
PROP_ROLE = "osbuild_role"
PROP_HEARTBEAT = "osbuild_heartbeat"
PROP_IMAGE_VERSION = "osbuild_image_version"
PROP_VERIFY = "osbuild_verify"
# How the image was made: "full" (installed from the ISO) or "refresh" (the parent patched),
# the parent's image id, and refreshes in a row since the last full build (0 for a full one).
PROP_BUILD_KIND = "osbuild_build_kind"
PROP_PARENT = "osbuild_parent_image"
PROP_GENERATION = "osbuild_generation"
# When `osbuild images rollback` took the image's place away (UTC, ISO 8601): a later
# rollback passes over it; `osbuild images promote` of it clears it ("").
PROP_ROLLED_BACK = "osbuild_rolled_back_at"
# What the installed Windows came from: the ISO images and the install image chosen on the
# Windows ISO. A refresh installs nothing: its image carries its parent's.
PROP_WINDOWS_ISO_ID = "osbuild_windows_iso_id"
PROP_VIRTIO_ISO_ID = "osbuild_virtio_iso_id"
PROP_EDITION = "osbuild_edition"
INSTALL_PROVENANCE = (PROP_WINDOWS_ISO_ID, PROP_VIRTIO_ISO_ID, PROP_EDITION)


def generation_of(properties: Mapping[str, object]) -> int | None:
    """An image's PROP_GENERATION as a number; None when it has none (an image made before
    kinds existed) or it is not a count."""
    value = str(properties.get(PROP_GENERATION, ""))
    return int(value) if value.isdigit() else None

_BUILD_ID = r"\d{8}t\d{6}-[0-9a-f]{6}"
_BUILD_ID_RE = re.compile(rf"^{_BUILD_ID}$")
_RESOURCE_NAME_RE = re.compile(rf"^osbuild-(?P<build_id>{_BUILD_ID})-(?P<role>[a-z0-9-]+)$")


def image_label(properties: Mapping[str, object]) -> str:
    """``NAME (ID)``: a family's images share their name (``{date}`` in it, or none), so a
    message that compares against one names its id too."""
    name, image_id = properties.get("name"), properties.get("id")
    if name and image_id and name != image_id:
        return f"{name} ({image_id})"
    return str(name or image_id or "current image")


def new_build_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261126t031500-a1b2c3``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dt%H%M%S}-{secrets.token_hex(3)}"


def build_started(build_id: str) -> str:
    """The start a build id holds, to the second (``20261126t031500``), comparable as text;
    "" for a value that is not a build id."""
    return build_id.split("-", 1)[0] if is_build_id(build_id) else ""


def is_build_id(value: str) -> bool:
    return bool(_BUILD_ID_RE.match(value))


def resource_name(build_id: str, role: str) -> str:
    return f"osbuild-{build_id}-{role}"


def parse_resource_name(name: str) -> tuple[str, str] | None:
    """The build id and role a :func:`resource_name` holds; None for any other name."""
    match = _RESOURCE_NAME_RE.match(name)
    return (match["build_id"], match["role"]) if match else None


def build_tag(build_id: str) -> str:
    return BUILD_TAG_PREFIX + build_id


def labels(build_id: str, family: str, role: str) -> dict[str, str]:
    """Metadata / properties every temporary resource carries."""
    return {PROP_BUILD_ID: build_id, PROP_FAMILY: family, PROP_ROLE: role}
