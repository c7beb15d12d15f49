"""Promote the proven image: final name, visibility, tags and members; current; rotate.

Rotation failing does not fail the build: the new image is current and good; the old ones
are left for `osbuild images prune`, and a warning says so.
"""

from __future__ import annotations

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.connect import Connection
from osbuild.cloud.retry import SDKError
from osbuild.errors import OsbuildError
from osbuild.images import RotationPolicy, mark_current, prune
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable
from osbuild.spec import BuildSpec


def give_final_attributes(conn: Connection, spec: BuildSpec, image_id: str,
                          name: str) -> image_api.Image:
    """The spec's name, visibility, tags and members for a proven image (not current yet)."""
    image = image_api.update_image(conn, image_id, name=name, visibility=spec.image.visibility)
    for tag in spec.image.tags:
        image_api.add_tag(conn, image_id, tag)
    for member in spec.image.members:
        image_api.add_member(conn, image_id, member)  # False: already a member
    return image


class PromoteImage(Resumable):
    name = "promote"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        conn = ctx.conn
        image_id = ctx.require(ctx.image_id, "image_id")
        name = spec.image_name_for(ctx.build_id)
        # No call here is given the cancel event, so Ctrl-C does not cut them short: a
        # half-promoted image (renamed, not current) helps nobody, and the verified image
        # must not be deleted as if the build had failed. The runner still reports the
        # signal (exit 130) once the step is done.
        image = give_final_attributes(conn, spec, image_id, name)
        mark_current(conn, image_id, spec.name)
        ctx.image_name = image.name or name
        ctx.emit(EventName.IMAGE_PROMOTED, image_id=image_id, image_name=ctx.image_name,
                 tag=naming.CURRENT_TAG)
        self._rotate(ctx)

    def _rotate(self, ctx: BuildContext) -> None:
        policy = RotationPolicy.from_spec(ctx.spec.image)
        try:
            decisions = prune(ctx.conn, ctx.spec.name, policy,
                              )
        except (OsbuildError, SDKError) as exc:
            ctx.emit(EventName.WARNING, message=f"rotation of {ctx.spec.name} failed ({exc}); run "
                     f"osbuild images prune --family {ctx.spec.name}")
            return
        for decision in decisions:
            if decision.action != "keep":
                ctx.emit(EventName.IMAGE_ROTATED, image_id=decision.image.id,
                         image_name=decision.image.name, action=decision.action,
                         reason=decision.reason)
