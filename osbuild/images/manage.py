"""Changing a family: prune per policy, mark an image current, promote, roll back."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from openstack.connection import Connection

from osbuild import naming
from osbuild.cloud.clock import session_clock
from osbuild.cloud.delete import delete_image
from osbuild.cloud.retry import is_not_found, retrying
from osbuild.errors import InvalidInput
from osbuild.images.family import (
    FamilyImage,
    current_of,
    from_glance,
    glance,
    glance_family,
    list_family,
    sort_newest_first,
)
from osbuild.images.policy import Decision, RotationPolicy, plan

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
            retrying(lambda i=image_id: glance(conn).update_image(i, is_hidden=True),
                     clock=session_clock(conn))
        elif decision.action == "delete":
            delete_image(conn, image_id)
    return decisions


def mark_current(conn: Connection, image_id: str, family: str) -> None:
    """Make ``image_id`` the family's current image and take the tag from the others.

    The new image gets the tag first: a reader sees at most a moment with two current
    images (and takes the newer version), never a moment with none. The images that lose
    the tag are hidden: superseded images leave default listings at once.
    """
    clock = session_clock(conn)
    retrying(lambda: glance(conn).update_image(image_id, is_hidden=False), clock=clock)
    retrying(lambda: glance(conn).add_tag(image_id, naming.CURRENT_TAG), clock=clock)
    for image in glance_family(conn, family):
        if str(image.id) == image_id or naming.CURRENT_TAG not in (image.tags or []):
            continue
        _remove_current_tag(conn, str(image.id))
        retrying(lambda i=str(image.id): glance(conn).update_image(i, is_hidden=True),
                 clock=session_clock(conn))


def _remove_current_tag(conn: Connection, image_id: str) -> None:
    def remove() -> None:
        try:
            glance(conn).remove_tag(image_id, naming.CURRENT_TAG)
        except Exception as exc:
            if not is_not_found(exc):  # already gone: someone else got there first
                raise

    retrying(remove, clock=session_clock(conn))


def _get(conn: Connection, image_id: str) -> Any:
    try:
        return retrying(lambda: glance(conn).get_image(image_id), clock=session_clock(conn))
    except Exception as exc:
        if is_not_found(exc):
            raise InvalidInput([f"image {image_id}: not found in Glance"]) from None
        raise


def _by_name(conn: Connection, name: str) -> list[Any]:
    """osbuild's images named ``name``, hidden ones included (a name is not unique)."""
    found: dict[str, Any] = {}
    for hidden in (False, True):
        images = retrying(
            lambda h=hidden: list(glance(conn).images(tag=naming.TAG, is_hidden=h, name=name)),
            clock=session_clock(conn), listing=True)
        found.update((str(i.id), i) for i in images if i.name == name)
    return list(found.values())


def find_image(conn: Connection, name_or_id: str) -> Any:
    """The Glance image with this ID, or the one osbuild image with this name.

    Names repeat in Glance (a family's `{date}` names do within a day): an ambiguous name is
    an error that lists the candidates, never a guess.
    """
    if _UUID_RE.match(name_or_id):
        return _get(conn, name_or_id)
    matches = _by_name(conn, name_or_id)
    if not matches:
        raise InvalidInput([f"image {name_or_id}: no image with this ID or name in Glance"])
    if len(matches) > 1:
        candidates = sort_newest_first([from_glance(i) for i in matches])
        raise InvalidInput(
            [f"image {name_or_id}: {len(matches)} images have this name; give the ID of one:"]
            + [f"  {i.id}  version {i.version}, verify {i.verify}"
               + (", current" if i.current else "") + (", hidden" if i.hidden else "")
               for i in candidates])
    return matches[0]


def promote(conn: Connection, image_id: str) -> FamilyImage:
    """Make a verified image of a family current again (``image_id``: its ID or name)."""
    image = from_glance(find_image(conn, image_id))
    image_id = image.id
    if not image.family:
        raise InvalidInput([f"image {image_id}: not an osbuild image "
                            f"(no {naming.PROP_FAMILY} property)"])
    if image.status != "active":
        raise InvalidInput([f"image {image_id}: status is {image.status}, not active"])
    if not image.promotable:
        raise InvalidInput([f"image {image_id}: {naming.PROP_VERIFY} is {image.verify}; only "
                            "an image that passed its boot test can be promoted"])
    mark_current(conn, image.id, image.family)
    return from_glance(_get(conn, image_id))


def rollback(conn: Connection, family: str) -> FamilyImage:
    """Make the verified image before the current one current again."""
    images = list_family(conn, family, with_usage=False)
    if not images:
        raise InvalidInput([f"family {family}: no images"])
    current = current_of(images)
    if current is None:
        raise InvalidInput([f"family {family}: no current image to roll back from "
                            f"(promote one with: osbuild images promote ID)"])
    previous = [i for i in images if i.promotable and i.version < current.version]
    if not previous:
        raise InvalidInput([f"family {family}: no verified image older than the current "
                            f"one ({current.name}, {current.id})"])
    return promote(conn, previous[0].id)
