"""Changing a family: prune per policy, mark an image current, promote, roll back."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.clock import session_clock
from osbuild.cloud.connect import Connection
from osbuild.cloud.delete import delete_image
from osbuild.cloud.retry import HttpError, api_message, is_not_found, retrying, status_of
from osbuild.errors import BuildFailed, InvalidInput
from osbuild.images.family import (
    FamilyImage,
    current_of,
    from_glance,
    glance_family,
    list_family,
    sort_newest_first,
)
from osbuild.images.policy import Decision, RotationPolicy, plan
from osbuild.spec import BuildSpec

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def prune(conn: Connection, family: str, policy: RotationPolicy, *, dry_run: bool = False,
          now: datetime | None = None) -> list[Decision]:
    """Apply ``policy`` to ``family``; with ``dry_run`` only say what would happen."""
    decisions = plan(list_family(conn, family), policy, now)
    if dry_run:
        return decisions
    for decision in decisions:
        image_id = decision.image.id
        if decision.action == "hide":
            image_api.update_image(conn, image_id, is_hidden=True)
        elif decision.action == "delete":
            delete_image(conn, image_id)
    return decisions


def mark_current(conn: Connection, image_id: str, family: str) -> None:
    """Make ``image_id`` the family's current image and take the tag from the others.

    The new image gets the tag first: a reader sees at most a moment with two current
    images (and takes the newer version), never a moment with none. The images that lose
    the tag are hidden: superseded images leave default listings at once.
    """
    image_api.update_image(conn, image_id, is_hidden=False)
    image_api.add_tag(conn, image_id, naming.CURRENT_TAG)
    for image in glance_family(conn, family):
        if image.id == image_id or naming.CURRENT_TAG not in image.tags:
            continue
        _remove_current_tag(conn, image.id)
        image_api.update_image(conn, image.id, is_hidden=True)


def _remove_current_tag(conn: Connection, image_id: str) -> None:
    def remove() -> None:
        try:
            image_api.remove_tag(conn, image_id, naming.CURRENT_TAG)
        except Exception as exc:
            if not is_not_found(exc):  # already gone: someone else got there first
                raise

    retrying(remove, clock=session_clock(conn))


def _get(conn: Connection, image_id: str) -> image_api.Image:
    try:
        return image_api.get_image(conn, image_id)
    except Exception as exc:
        if is_not_found(exc):
            raise InvalidInput([f"image {image_id}: not found in Glance"]) from None
        raise


def _by_name(conn: Connection, name: str) -> list[image_api.Image]:
    """osbuild's images named ``name``, hidden ones included (a name is not unique)."""
    found: dict[str, image_api.Image] = {}
    for hidden in (False, True):
        images = image_api.images(conn, tag=naming.TAG, is_hidden=hidden, name=name)
        found.update((i.id, i) for i in images if i.name == name)
    return list(found.values())


def find_image(conn: Connection, name_or_id: str) -> image_api.Image:
    """The Glance image with this ID, or the one osbuild image with this name.

    Names repeat in Glance (a family's `{date}` names do within a day): an ambiguous name is
    an error that lists the candidates, never a guess.
    """
    if _UUID_RE.match(name_or_id):
        return _get(conn, name_or_id)
    matches = _by_name(conn, name_or_id)
    if not matches:
        if image_api.images(conn, name=name_or_id):
            # Glance has it, but osbuild did not make it (an ISO, an image of another tool).
            raise InvalidInput([f"image {name_or_id}: not an osbuild image (no "
                                f"{naming.TAG} tag); give the name or ID of one osbuild "
                                "made"])
        raise InvalidInput([f"image {name_or_id}: no image with this ID or name in Glance"])
    if len(matches) > 1:
        candidates = sort_newest_first([from_glance(i) for i in matches])
        raise InvalidInput(
            [f"image {name_or_id}: {len(matches)} images have this name; give the ID of one:"]
            + [f"  {i.id}  version {i.version}, verify {i.verify}"
               + (", current" if i.current else "") + (", hidden" if i.hidden else "")
               for i in candidates])
    return matches[0]


def give_final_attributes(conn: Connection, spec: BuildSpec, image_id: str,
                          name: str) -> image_api.Image:
    """The spec's name, visibility, tags and members for a proven image (not current yet).

    The visibility first, the name second, each in its own request: a refusal names what
    was refused, and until both are done the image keeps its capture name, by which a later
    `osbuild images promote` knows to give them again."""
    visibility = spec.image.visibility
    image = image_api.get_image(conn, image_id)
    try:
        if image.visibility != visibility:
            image = image_api.update_image(conn, image_id, visibility=visibility)
    except HttpError as exc:
        if status_of(exc) != 403:
            raise
        # Glance's publicize_image policy is admin-only by default (glance/policies/
        # image.py; communitize_image is the admin's or a project member's); the SDK's
        # text names neither the spec key nor the way out.
        default = ("; by default only an admin may make an image public"
                   if visibility == "public" else "")
        raise BuildFailed(
            f"image.visibility: Glance refused to make image {image_id} {visibility} "
            f"({api_message(exc)}){default}. The verified image stays hidden under its "
            f"capture name: once the visibility is allowed (or changed in the spec), run "
            f"osbuild images promote {image_id} SPEC", stage="promote") from None
    try:
        image = image_api.update_image(conn, image_id, name=name)
    except HttpError as exc:
        if status_of(exc) != 403:
            raise
        raise BuildFailed(
            f"image.name: Glance refused to rename image {image_id} to {name!r} "
            f"({api_message(exc)}). The verified image stays hidden under its capture name: "
            f"once allowed, run osbuild images promote {image_id} SPEC",
            stage="promote") from None
    for tag in spec.image.tags:
        image_api.add_tag(conn, image_id, tag)
    for member in spec.image.members:
        image_api.add_member(conn, image_id, member)  # False: already a member
    return image


def has_capture_name(image: FamilyImage) -> bool:
    """Whether the image still has the name its capture gave it: its build stopped before
    promote gave it the spec's name, visibility, tags and members."""
    return naming.parse_resource_name(image.name) is not None


def capture_name_reason(image: FamilyImage) -> str:
    """Why an image under its capture name needs its family's spec to be promoted."""
    return (f"still has its capture name {image.name} (its build stopped before giving it "
            "the spec's name, visibility, tags and members)")


def promote(conn: Connection, image_id: str,
            spec: Callable[[FamilyImage], BuildSpec] | None = None, *,
            family: str | None = None) -> FamilyImage:
    """Make a verified image of a family current again (``image_id``: its ID or name).

    An image still under its capture name first gets the final name, visibility, tags and
    members of its family's spec (``spec``: finds it for the image); without a spec it is
    refused, since it would become current private, unshared and under a name nobody
    looks for. ``family``: the family the operator named (a spec file), which the image
    must be of whatever its name."""
    image = from_glance(find_image(conn, image_id))
    image_id = image.id
    if not image.family:
        raise InvalidInput([f"image {image_id}: not an osbuild image "
                            f"(no {naming.PROP_FAMILY} property)"])
    if family is not None and family != image.family:
        raise InvalidInput([f"image {image_id}: not an image of family {family} "
                            f"({image.family})"])
    if image.status != "active":
        raise InvalidInput([f"image {image_id}: status is {image.status}, not active"])
    if not image.promotable:
        raise InvalidInput([f"image {image_id}: {naming.PROP_VERIFY} is {image.verify}; only "
                            "an image that passed its boot test can be promoted"])
    if has_capture_name(image):
        if spec is None:
            raise InvalidInput([f"image {image_id}: {capture_name_reason(image)}; give the "
                                f"family's spec: osbuild images promote {image_id} SPEC"])
        family_spec = spec(image)
        if family_spec.name != image.family:
            raise InvalidInput([f"image {image_id}: not an image of family "
                                f"{family_spec.name} ({image.family})"])
        give_final_attributes(conn, family_spec, image_id,
                              family_spec.image_name_for(image.build_id or image_id))
    if image.rolled_back_at:
        # The operator takes it back on purpose: later rollbacks may come to it again.
        cleared: dict[str, Any] = {naming.PROP_ROLLED_BACK: ""}
        image_api.update_image(conn, image_id, **cleared)
    mark_current(conn, image.id, image.family)
    return from_glance(_get(conn, image_id))


@dataclass(frozen=True)
class RolledBack:
    image: FamilyImage  # current now
    rolled_back_from: FamilyImage
    passed_over: list[FamilyImage]  # rolled back from before: not taken again


def rollback(conn: Connection, family: str, now: datetime | None = None) -> RolledBack:
    """Make the verified image before the current one current again, and mark the current
    one rolled back from: a later rollback passes over it (after a refresh of the image
    rolled back to, "the image before" would otherwise be the one taken out of service)."""
    images = list_family(conn, family, with_usage=False)
    if not images:
        raise InvalidInput([f"family {family}: no images"])
    current = current_of(images)
    if current is None:
        raise InvalidInput([f"family {family}: no current image to roll back from "
                            f"(promote one with: osbuild images promote ID)"])
    older = [i for i in images if i.promotable and i.version < current.version]
    passed_over = [i for i in older if i.rolled_back_at]
    previous = [i for i in older if not i.rolled_back_at]
    if not previous:
        skipped = "".join(f"; {i.name} ({i.id}) was rolled back from at {i.rolled_back_at} "
                          f"(osbuild images promote {i.id} takes it back)" for i in passed_over)
        raise InvalidInput([f"family {family}: no verified image older than the current "
                            f"one ({current.name}, {current.id}){skipped}"])
    promoted = promote(conn, previous[0].id)
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    marked: dict[str, Any] = {naming.PROP_ROLLED_BACK: stamp}
    # As it is now (not current, hidden, marked), which `rollback --json` shows.
    rejected = from_glance(image_api.update_image(conn, current.id, **marked))
    newer_passed = [i for i in passed_over if i.version > promoted.version]
    return RolledBack(promoted, rejected, newer_passed)
