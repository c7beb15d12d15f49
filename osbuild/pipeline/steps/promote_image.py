"""Promote the proven image: final name, visibility, tags and members; current; rotate.

Rotation failing does not fail the build: the new image is current and good; the old ones
are left for `osbuild images prune`, and a warning says so.
"""

from __future__ import annotations

from osbuild import naming
from osbuild.cloud.retry import SDKError
from osbuild.errors import BuildFailed, OsbuildError
from osbuild.images import RotationPolicy, mark_current, prune
from osbuild.images.family import current_of, list_family
from osbuild.images.manage import give_final_attributes
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable


class PromoteImage(Resumable):
    name = "promote"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        conn = ctx.conn
        image_id = ctx.require(ctx.image_id, "image_id")
        name = spec.image_name_for(ctx.build_id)
        self._check_parent_still_current(ctx, image_id, name)
        self._check_no_newer_current(ctx, image_id, name)
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

    def _check_parent_still_current(self, ctx: BuildContext, image_id: str,
                                    name: str) -> None:
        """A refresh patches the family's current image; when someone made another image
        current while it ran (`osbuild images rollback` or `promote`, the parent deleted),
        promoting it would undo that with a copy of the image they moved away from. It
        stays hidden and verified instead (kept, as after any failure past verify), with
        its final name, visibility, tags and members, so that `osbuild images promote`
        (which knows no spec) only has to make it current."""
        parent = ctx.parent
        if parent is None:
            return
        current = current_of(list_family(ctx.conn, ctx.spec.name, with_usage=False))
        if current is not None and current.id in (parent.image_id, image_id):
            return  # image_id: a resumed promotion that had already tagged it
        _keep_under_final_name(ctx, image_id, name)
        now = f"{current.name} ({current.id})" if current is not None else "none"
        raise BuildFailed(
            f"parent image {parent.name} ({parent.image_id}) is no longer the current image "
            f"of {ctx.spec.name} (now: {now}); someone changed it while the refresh ran, so "
            f"the refreshed image stays hidden: osbuild images promote {image_id} makes it "
            "current", stage=self.name)

    def _check_no_newer_current(self, ctx: BuildContext, image_id: str, name: str) -> None:
        """A build that started after this one has made its image current: this one's
        osbuild died and was resumed after its claim went stale and another host built the
        family. Promoting the older image would quietly take the family back in time; it
        stays hidden and verified (as a refresh over a moved parent), for `osbuild images
        promote` if the operator wants it after all."""
        current = current_of(list_family(ctx.conn, ctx.spec.name, with_usage=False))
        if current is None or current.id == image_id or not current.build_id:
            return
        if naming.build_started(current.build_id) <= naming.build_started(ctx.build_id):
            return  # an older image (or one of the same second): this one is newer
        _keep_under_final_name(ctx, image_id, name)
        raise BuildFailed(
            f"image {current.name} ({current.id}) of build {current.build_id}, which started "
            f"after this one, became the current image of {ctx.spec.name} while this build "
            f"was held up; this older image stays hidden: osbuild images promote {image_id} "
            "makes it current", stage=self.name)

    def _rotate(self, ctx: BuildContext) -> None:
        policy = RotationPolicy.from_spec(ctx.spec.image)
        try:
            decisions = prune(ctx.conn, ctx.spec.name, policy)
        except (OsbuildError, SDKError) as exc:
            ctx.emit(EventName.WARNING, message=f"rotation of {ctx.spec.name} failed ({exc}); run "
                     f"osbuild images prune --family {ctx.spec.name}")
            return
        for decision in decisions:
            if decision.action != "keep":
                done = {"image_id": decision.image.id, "image_name": decision.image.name,
                        "action": decision.action, "reason": decision.reason}
                ctx.rotated.append(done)
                ctx.emit(EventName.IMAGE_ROTATED, image_id=decision.image.id,
                         image_name=decision.image.name, action=decision.action,
                         reason=decision.reason)


def _keep_under_final_name(ctx: BuildContext, image_id: str, name: str) -> None:
    """The verified image a failed promotion keeps hidden, with its final name and the rest,
    and so named in the build's summary of what it kept."""
    give_final_attributes(ctx.conn, ctx.spec, image_id, name)
    kept = ctx.find_resource("image", image_id)
    if kept is not None:
        kept.name = name
