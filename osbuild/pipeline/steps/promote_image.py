"""Promote the proven image: final name, visibility, tags and members; current; rotate.

Rotation failing does not fail the build: the new image is current and good; the old ones
are left for `osbuild images prune`, and a warning says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from openstack import exceptions as sdk_exc

from osbuild import naming
from osbuild.cloud.retry import retrying, status_of
from osbuild.errors import OsbuildError
from osbuild.images import RotationPolicy, mark_current, prune
from osbuild.images.family import glance
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable

T = TypeVar("T")


def _to_the_end(ctx: BuildContext, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A call that Ctrl-C does not cut short: a half-promoted image (renamed, not current)
    helps nobody, and the verified image must not be deleted as if the build had failed.
    The runner still reports the signal (exit 130) once the step is done."""
    return retrying(fn, *args, clock=ctx.clock, **kwargs)


class PromoteImage(Resumable):
    name = "promote"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        conn = ctx.conn
        image_id = ctx.require(ctx.image_id, "image_id")
        name = spec.image_name_for(ctx.build_id)
        image = _to_the_end(ctx, conn.image.update_image, image_id, name=name,
                            visibility=spec.image.visibility)
        for tag in spec.image.tags:
            _to_the_end(ctx, glance(conn).add_tag, image_id, tag)
        for member in spec.image.members:
            self._add_member(ctx, image_id, member)
        mark_current(conn, image_id, spec.name)
        ctx.image_name = image.name or name
        ctx.emit(EventName.IMAGE_PROMOTED, image_id=image_id, image_name=ctx.image_name,
                 tag=naming.CURRENT_TAG)
        self._rotate(ctx)

    def _add_member(self, ctx: BuildContext, image_id: str, member: str) -> None:
        try:
            _to_the_end(ctx, glance(ctx.conn).add_member, image_id, member=member)
        except sdk_exc.HttpException as exc:
            if status_of(exc) != 409:  # already a member
                raise

    def _rotate(self, ctx: BuildContext) -> None:
        policy = RotationPolicy.from_spec(ctx.spec.image)
        try:
            decisions = prune(ctx.conn, ctx.spec.name, policy,
                              )
        except (OsbuildError, sdk_exc.SDKException) as exc:
            ctx.emit(EventName.WARNING, message=f"rotation of {ctx.spec.name} failed ({exc}); run "
                     f"osbuild images prune --family {ctx.spec.name}")
            return
        for decision in decisions:
            if decision.action != "keep":
                ctx.emit(EventName.IMAGE_ROTATED, image_id=decision.image.id,
                         image_name=decision.image.name, action=decision.action,
                         reason=decision.reason)
