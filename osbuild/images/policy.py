"""The rotation policy as a pure function: which images of a family to hide or delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from osbuild.images.family import VERIFY_PENDING, FamilyImage, current_of, sort_newest_first
from osbuild.spec import ImageSpec, format_duration

Action = Literal["keep", "hide", "delete"]


@dataclass(frozen=True)
class RotationPolicy:
    keep: int = 3
    max_age: float | None = None
    superseded: Literal["hide", "delete"] = "hide"

    @classmethod
    def from_spec(cls, image: ImageSpec) -> RotationPolicy:
        return cls(keep=image.keep, max_age=image.max_age, superseded=image.superseded)


@dataclass(frozen=True)
class Decision:
    image: FamilyImage
    action: Action
    reason: str


def plan(images: list[FamilyImage], policy: RotationPolicy,
         now: datetime | None = None) -> list[Decision]:
    """Decide for every image, newest first.

    Every image but the current one is hidden at once. One is deleted when the policy says
    so (superseded: delete, beyond ``keep`` newest, older than ``max_age``) unless it is
    protected, used by a server, or the family's last verified image.
    """
    ordered = sort_newest_first(images)
    current = current_of(ordered)
    # `keep` counts the images a rollback could go to: an image that failed its boot test
    # or was rolled back from takes no such slot (three of them kept after a good build
    # deleted the image that had been current just before it). They go once they are
    # beyond the newest `keep` of all.
    usable_rank = {i.id: n for n, i in enumerate(i for i in ordered if _usable(i))}
    reasons: dict[str, str] = {}
    for rank, image in enumerate(ordered):
        if image.current or image.status != "active" or image.verify == VERIFY_PENDING:
            continue
        why = _delete_reason(image, usable_rank.get(image.id, rank), current, policy, now)
        if why:
            reasons[image.id] = why

    # Deleting oldest first, the family keeps at least one verified image a rollback can
    # go to.
    verified_left = sum(1 for i in ordered if i.verified and not i.rolled_back_at)
    blocked: dict[str, str] = {}
    for image in reversed(ordered):
        if image.id not in reasons:
            continue
        if image.protected:
            blocked[image.id] = "protected"
        elif image.in_use:
            blocked[image.id] = f"in use by {image.in_use} server(s)"
        elif image.verified and not image.rolled_back_at and verified_left <= 1:
            blocked[image.id] = "the family's last verified image"
        elif image.verified and not image.rolled_back_at:
            verified_left -= 1

    decisions = []
    for image in ordered:
        decisions.append(_decide(image, reasons.get(image.id), blocked.get(image.id),
                                 _kept_because(image, policy)))
    return decisions


def _kept_because(image: FamilyImage, policy: RotationPolicy) -> str:
    """Why a non-current image within the limits stays: the rule that spares it."""
    if _usable(image):
        return f"not current, one of the newest {policy.keep} a rollback could go to"
    why = "rolled back from" if image.rolled_back_at else f"verify {image.verify}"
    return f"not current ({why}), within the newest {policy.keep} of all"


def _usable(image: FamilyImage) -> bool:
    """An image a rollback could make current: promotable and not rolled back from."""
    return image.promotable and not image.rolled_back_at


def _delete_reason(image: FamilyImage, rank: int, current: FamilyImage | None,
                   policy: RotationPolicy, now: datetime | None) -> str | None:
    if policy.superseded == "delete" and current is not None and image.version < current.version:
        return f"superseded by {current.version}"
    if rank >= policy.keep:
        return f"beyond the newest {policy.keep}"
    age = image.age(now)
    if policy.max_age is not None and age is not None and age > policy.max_age:
        return f"older than {format_duration(policy.max_age)}"
    return None


def _decide(image: FamilyImage, delete_reason: str | None, blocker: str | None,
            kept_because: str = "not current") -> Decision:
    if image.current:
        return Decision(image, "keep", "current")
    if image.verify == VERIFY_PENDING:
        return Decision(image, "keep", "build in progress")
    if image.status != "active":
        return Decision(image, "keep", f"status {image.status}")
    if delete_reason and not blocker:
        return Decision(image, "delete", delete_reason)
    note = f"{delete_reason}, kept: {blocker}" if delete_reason else kept_because
    if image.hidden:
        return Decision(image, "keep", f"already hidden; {note}")
    return Decision(image, "hide", note)
