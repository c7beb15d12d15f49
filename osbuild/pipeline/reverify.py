"""Verify a kept image again (`osbuild images verify`): the build's boot test, alone.

An image whose boot test failed for a reason outside the image (a full cloud, a flaky
metadata service) stays hidden with ``osbuild_verify=failed``. Running the verify step on
it again, under a new build id, records the new verdict; a pass makes it promotable.
The image itself is never tracked here, so nothing this run does can delete it.
"""

from __future__ import annotations

from osbuild import naming
from osbuild.cloud import images as image_api
from osbuild.cloud.clock import CancelToken
from osbuild.cloud.connect import Connection
from osbuild.errors import InvalidInput
from osbuild.images.family import from_glance
from osbuild.images.manage import find_image, give_final_attributes
from osbuild.naming import new_build_id
from osbuild.pipeline.context import BuildContext, BuildOptions
from osbuild.pipeline.events import EventBus
from osbuild.pipeline.run import BuildResult, RunKind, execute, new_context
from osbuild.pipeline.steps.verify_image import VerifyImage
from osbuild.spec import BuildSpec


class _UseImage:
    """Stands in for capture and publish: the image exists already."""

    name = "find-image"

    def __init__(self, image: image_api.Image) -> None:
        self.image = image

    def run(self, ctx: BuildContext) -> None:
        ctx.image_id = self.image.id
        ctx.image_name = self.image.name
        ctx.image_found_min_disk = int(self.image.min_disk or 0)
        ctx.image_properties = {k: str(v) for k, v in self.image.properties.items()
                                if k.startswith("osbuild_")}


class _NameProvenImage:
    """A pass makes the image promotable: it gets the final name, visibility, tags and
    members its build's promote step would have given it (a failed boot test had left it
    with the hidden, private capture name), so `osbuild images promote` only makes it
    current. It stays hidden until then."""

    name = "name-image"

    def __init__(self, image: image_api.Image, build_id: str) -> None:
        self.image = image
        self.build_id = build_id

    def run(self, ctx: BuildContext) -> None:
        if self.build_id and self.image.name != naming.resource_name(self.build_id, "image"):
            # Named already, by its promotion or an earlier pass (the current image, say):
            # users and tooling know it by that name, and `{datetime}` would give a new one.
            return
        name = ctx.spec.image_name_for(self.build_id or ctx.build_id)
        image = give_final_attributes(ctx.conn, ctx.spec, self.image.id, name)
        ctx.image_name = image.name or name


def reverify(spec: BuildSpec, conn: Connection, image: str, *, options: BuildOptions,
             bus: EventBus | None = None, cancel: CancelToken | None = None,
             cloud_name: str | None = None) -> BuildResult:
    """Boot-test ``image`` (ID or name) of ``spec``'s family with the spec's verify settings."""
    found = find_image(conn, image)
    facts = from_glance(found)
    if facts.family != spec.name:
        have = facts.family or f"no {naming.PROP_FAMILY}"
        raise InvalidInput([f"image {facts.id}: not an image of family {spec.name} ({have})"])
    if facts.status != "active":
        raise InvalidInput([f"image {facts.id}: status is {facts.status}, not active"])
    ctx = new_context(spec, conn, options=options, bus=bus, cancel=cancel,
                      cloud_name=cloud_name, build_id=new_build_id())
    # Not a build: its report, events and page must not pass it off as one.
    ctx.kind_reason = f"osbuild images verify {found.id}: its boot test again"
    return execute(ctx, [_UseImage(found), VerifyImage(),
                         _NameProvenImage(found, facts.build_id)], kind=RunKind.VERIFY)
