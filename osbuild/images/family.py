"""An image family as Glance holds it: every image carrying ``osbuild_family=<name>``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.connect import Connection
from osbuild.images.usage import image_users

VERIFY_PASSED = "passed"
VERIFY_FAILED = "failed"
VERIFY_SKIPPED = "skipped"
VERIFY_PENDING = "pending"


@dataclass(frozen=True)
class FamilyImage:
    id: str
    name: str
    family: str
    version: str
    build_id: str
    status: str
    verify: str
    current: bool
    hidden: bool
    protected: bool
    visibility: str
    created_at: datetime | None
    in_use: int
    # How it was made (osbuild_build_kind): "full", "refresh", or "" before kinds existed;
    # a refresh's parent image and its generation (refreshes in a row; 0 for a full build).
    kind: str = ""
    parent_image_id: str | None = None
    generation: int | None = None
    # When `osbuild images rollback` took it out of service (ISO 8601), else None.
    rolled_back_at: str | None = None

    @property
    def made_by(self) -> str:
        """The kind of build as a list shows it: "full", "refresh 2", or "-"."""
        if self.kind == "refresh":
            return f"refresh {self.generation}" if self.generation is not None else "refresh"
        return self.kind or "-"

    @property
    def made_by_words(self) -> str:
        """As a sentence says it: "a full build", "refresh 2"."""
        return "a full build" if self.made_by == "full" else self.made_by

    @property
    def verified(self) -> bool:
        return self.verify == VERIFY_PASSED

    @property
    def promotable(self) -> bool:
        """Passed its boot test, or was built with the test switched off on purpose."""
        return self.status == "active" and self.verify in (VERIFY_PASSED, VERIFY_SKIPPED)

    def age(self, now: datetime | None = None) -> float | None:
        if self.created_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.created_at).total_seconds()

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        age = self.age(now)
        return {
            "id": self.id, "name": self.name, "family": self.family,
            "version": self.version, "build_id": self.build_id, "status": self.status,
            "verify": self.verify, "current": self.current, "hidden": self.hidden,
            "protected": self.protected, "visibility": self.visibility,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "age_seconds": round(age) if age is not None else None,
            "in_use": self.in_use, "kind": self.kind or None,
            "parent_image_id": self.parent_image_id, "generation": self.generation,
            "rolled_back_at": self.rolled_back_at,
        }


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def from_glance(image: image_api.Image, in_use: int = 0) -> FamilyImage:
    props = image.properties
    build_id = str(props.get(naming.PROP_BUILD_ID, ""))
    return FamilyImage(
        id=str(image.id),
        name=str(image.name or ""),
        family=str(props.get(naming.PROP_FAMILY, "")),
        # Images published before versions existed sort by their build id.
        version=str(props.get(naming.PROP_IMAGE_VERSION) or build_id),
        build_id=build_id,
        status=image.status.lower(),
        verify=str(props.get(naming.PROP_VERIFY, VERIFY_SKIPPED)),
        current=naming.CURRENT_TAG in image.tags,
        hidden=image.hidden,
        protected=image.protected,
        visibility=image.visibility,
        created_at=parse_time(image.created_at),
        in_use=in_use,
        kind=str(props.get(naming.PROP_BUILD_KIND) or ""),
        parent_image_id=str(props[naming.PROP_PARENT]) if props.get(naming.PROP_PARENT) else None,
        generation=naming.generation_of(props),
        rolled_back_at=str(props.get(naming.PROP_ROLLED_BACK) or "") or None,
    )


def glance_family(conn: Connection, family: str) -> list[image_api.Image]:
    """The family's Glance images, hidden ones included (Glance lists them separately)."""
    return glance_families(conn).get(family, [])


def glance_families(conn: Connection) -> dict[str, list[image_api.Image]]:
    """Every family's Glance images, by family name, hidden ones included."""
    found: dict[str, image_api.Image] = {}
    for hidden in (False, True):
        for image in image_api.images(conn, tag=naming.TAG, is_hidden=hidden):
            if not image.properties.get(naming.PROP_FAMILY):
                continue
            # Temporary images (config ISO, blank root) carry the family too, with a role.
            if image.properties.get(naming.PROP_ROLE) not in (None, "image"):
                continue
            found[image.id] = image
    families: dict[str, list[image_api.Image]] = {}
    for image in found.values():
        families.setdefault(str(image.properties[naming.PROP_FAMILY]), []).append(image)
    return families


def list_family(conn: Connection, family: str, *, with_usage: bool = True) -> list[FamilyImage]:
    """The family's images, newest version first."""
    images = glance_family(conn, family)
    users = image_users(conn) if with_usage and images else {}
    members = [from_glance(i, len(users.get(i.id, ()))) for i in images]
    return sort_newest_first(members)


def sort_newest_first(images: list[FamilyImage]) -> list[FamilyImage]:
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(images, key=lambda i: (i.version, i.created_at or epoch, i.id), reverse=True)


def current_of(images: list[FamilyImage]) -> FamilyImage | None:
    """The current image; during a promotion two may carry the tag: the newer wins."""
    return next((i for i in sort_newest_first(images) if i.current), None)
