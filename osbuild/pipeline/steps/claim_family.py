"""Claim the family in the cloud before creating anything, for the whole build.

The claim is a Glance image without data (it stays ``queued``, costs nothing) carrying the
build's labels and a heartbeat that every wait of the build refreshes (``ctx.pause``). Other
hosts' cloud guards, gc and ``osbuild status`` take a fresh claim for a build in progress
(``lock.active_builders``), also after the builder is gone: capture, the boot test and
promotion. It is the build's first cloud resource, so the runner deletes it last.
"""

from __future__ import annotations

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.delete import delete_image
from osbuild.errors import LockBusy
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.create import create_behind_lookup
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.unattended.lock import (
    CLAIM_ROLE,
    CLAIM_SETTLE,
    Heartbeat,
    format_heartbeat,
    send_claim_heartbeat,
    yield_to_claim,
)


class ClaimFamily(Resumable):
    """Only builds that took the family lock (``options.lock_family``) claim the family.

    Two hosts can pass the cloud guard at the same moment: both claim, and the build whose
    claim Glance created later backs out (``lock.yield_to_claim``) with nothing else created.
    """

    name = "claim"

    def __init__(self, *, contest: bool = True) -> None:
        # A resumed build does not contest: it held the family before its osbuild died, and
        # its cloud guard has just found no other build.
        self.contest = contest

    def run(self, ctx: BuildContext) -> None:
        if not ctx.options.lock_family:
            return
        claim_id = _claim(ctx)
        ctx.claim = Heartbeat(lambda: send_claim_heartbeat(ctx.conn, claim_id),
                              what="family claim", interval=ctx.options.heartbeat_every,
                              on_failure=lambda message: ctx.emit(EventName.WARNING,
                                                                  message=message),
                              stamped=True)  # _claim stamped it
        if not self.contest:
            return
        if ctx.cancel.event.wait(CLAIM_SETTLE):  # wall-clock seconds (lock.CLAIM_SETTLE)
            ctx.cancel.check()
        other = ctx.call(yield_to_claim, ctx.conn, family=ctx.spec.name, build_id=ctx.build_id)
        if other is not None:
            raise LockBusy(
                f"already being built by build {other.build_id} (claim image {other.name}), "
                "which claimed the family first; skipping",
                build_id=other.build_id,
            )

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        # The claim is stale after the dead run (or gc deleted it): stamp it or make one.
        return ClaimFamily(contest=False) if ctx.options.lock_family else None


def _claim(ctx: BuildContext) -> str:
    """The build's claim image, created (or found again: a build started over) and
    stamped; tracked for deletion at the end of the build, whatever its outcome."""
    conn = ctx.conn
    cancel = ctx.cancel.event
    name = naming.resource_name(ctx.build_id, CLAIM_ROLE)

    def lookup() -> image_api.Image | None:
        found = image_api.images(conn, name=name, cancel=cancel)
        found += image_api.images(conn, name=name, is_hidden=True, cancel=cancel)
        return found[0] if found else None

    existing = lookup()
    if existing is not None:
        # A resumed build's, or one of a build started over under its id: stamped again.
        claim_id = existing.id
        send_claim_heartbeat(conn, claim_id)
    else:
        labels = {**naming.labels(ctx.build_id, ctx.spec.name, CLAIM_ROLE),
                  naming.PROP_HEARTBEAT: format_heartbeat()}
        claim_id = str(create_behind_lookup(
            ctx,
            lambda: image_api.create_image(conn, name=name, disk_format="raw",
                                           properties=labels),
            lookup,
            what="the family claim",
        ).id)
    tracked = ctx.find_resource("image", claim_id) or ctx.track(
        "image", claim_id, name, lambda: delete_image(conn, claim_id))
    tracked.until_end = True  # the release step leaves it: the build goes on
    # Out of `openstack image list` (other hosts list hidden claims too), tagged as all
    # of osbuild's images are.
    image_api.update_image(conn, claim_id, is_hidden=True, cancel=cancel)
    image_api.add_tag(conn, claim_id, naming.TAG, cancel=cancel)
    return claim_id
