"""Give the captured image its properties while it is still hidden and unproven.

The final name, visibility, tags and members come with promotion, after the boot test: until
then the image is hidden, private, and marked ``osbuild_verify=pending`` (or ``skipped``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from osbuild import __version__, naming
from osbuild.cloud import images as image_api
from osbuild.cloud.image_fields import custom_properties, remove_properties
from osbuild.cloud.retry import HttpError, api_message, status_of
from osbuild.errors import BuildFailed
from osbuild.images.family import VERIFY_PENDING, VERIFY_SKIPPED
from osbuild.images.refresh import generation_made
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.hardware import hardware_properties
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.unattended.fingerprint import PROP_FINGERPRINT, inputs_from_checksums


def provenance(ctx: BuildContext) -> dict[str, str]:
    """Where the image came from, so an operator can trace and reproduce it."""
    common = {
        naming.PROP_FAMILY: ctx.spec.name,
        naming.PROP_BUILD_ID: ctx.build_id,
        "osbuild_version": __version__,
        "osbuild_build_time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if ctx.parent is not None:  # the Windows installed is the parent's
        return {**ctx.parent.provenance, **common}
    resolved = ctx.require(ctx.resolved, "resolved")
    windows = ctx.require(resolved.windows_iso, "windows_iso")
    virtio = ctx.require(resolved.virtio_iso, "virtio_iso")
    return {
        **common,
        # The spec digest and the ISO checksums are among the fingerprint's inputs.
        naming.PROP_WINDOWS_ISO_ID: windows.id,
        naming.PROP_VIRTIO_ISO_ID: virtio.id,
        # The install image selected on the ISO (an evaluation ISO's name differs).
        naming.PROP_EDITION: resolved.install_image or ctx.spec.windows.image_name,
    }


GIB = 1024**3
PROP_SIZE = "osbuild_image_size"
PROP_VIRTUAL_SIZE = "osbuild_virtual_size"


def size_properties(ctx: BuildContext, image: image_api.Image) -> dict[str, str]:
    """The captured image's stored bytes and its disk's size, as Glance reports them: what
    the image hygiene saved shows in the first (qcow2 holds only non-zero blocks)."""
    spec = ctx.spec
    virtual = image.virtual_size
    if virtual is None and spec.builder.target == "volume":
        virtual = spec.builder.disk_gb * GIB  # Glance did not inspect it; it is the volume
    out = {}
    if image.size:
        out[PROP_SIZE] = str(int(image.size))
    if virtual is not None:
        out[PROP_VIRTUAL_SIZE] = str(int(virtual))
    return out


def lineage_properties(ctx: BuildContext) -> dict[str, str]:
    """Which kind of build made the image, from which parent, how many refreshes in a row."""
    if ctx.parent is None:
        return {naming.PROP_BUILD_KIND: "full", naming.PROP_GENERATION: "0"}
    return {naming.PROP_BUILD_KIND: "refresh", naming.PROP_PARENT: ctx.parent.image_id,
            naming.PROP_GENERATION: str(generation_made(ctx.parent))}


def lifecycle_properties(ctx: BuildContext) -> dict[str, str]:
    """What `osbuild images` sorts and filters a family by."""
    return {
        naming.PROP_ROLE: "image",
        # Build ids start with a UTC timestamp: they sort in build order.
        naming.PROP_IMAGE_VERSION: ctx.build_id,
        naming.PROP_VERIFY: VERIFY_PENDING if ctx.spec.verify.enabled else VERIFY_SKIPPED,
    }


def fingerprint_properties(ctx: BuildContext) -> dict[str, str]:
    """The input fingerprint `--if-changed` compares against, and each input on its own.

    Among them the spec digest and the ISO images' checksums, as preflight resolved them.
    A refresh installs none of its inputs: its image keeps the parent's.
    """
    if ctx.parent is not None and ctx.parent.inputs.get(PROP_FINGERPRINT):
        ctx.fingerprint = ctx.parent.inputs[PROP_FINGERPRINT]
        return dict(ctx.parent.inputs)
    resolved = ctx.require(ctx.resolved, "resolved")
    windows = ctx.require(resolved.windows_iso, "windows_iso")
    virtio = ctx.require(resolved.virtio_iso, "virtio_iso")
    inputs = inputs_from_checksums(ctx.spec, windows_iso=windows.checksum,
                                   virtio_iso=virtio.checksum)
    ctx.fingerprint = inputs.digest()
    return inputs.properties()


class PublishImage(Resumable):
    name = "publish"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        conn = ctx.conn
        image_id = ctx.require(ctx.image_id, "image_id")
        captured = image_api.get_image(conn, image_id, cancel=ctx.cancel.event)
        properties = {
            **hardware_properties(ctx),
            **size_properties(ctx, captured),
            **spec.image.properties,
            **provenance(ctx),
            **fingerprint_properties(ctx),
            **lineage_properties(ctx),
            **lifecycle_properties(ctx),
        }
        try:
            image = image_api.update_image(
                conn, image_id, cancel=ctx.cancel.event,
                is_hidden=True,
                visibility="private",
                min_disk=ctx.image_min_disk_gb,
                min_ram=spec.image.min_ram,
                **properties,
            )
        except HttpError as exc:
            if status_of(exc) != 403:
                raise
            # In osbuild's words, as promote's refusals are (it read "ForbiddenException:
            # 403: Client Error for url: ..."): the image is the build's, deleted with it.
            raise BuildFailed(
                f"Glance refused to set the captured image {image_id}'s properties, "
                f"visibility and size limits ({api_message(exc)}): this cloud's policy "
                "forbids updating images (modify_image) to this user",
                stage="publish") from None
        # Nova's createImage copies the temporary root image's properties into the capture
        # (base_image_ref to a deleted image, the SDK's owner_specified.*, boot_roles...):
        # the published image carries exactly osbuild's and the spec's properties.
        current = custom_properties(conn, image_id, call=ctx.call)
        stale = [key for key in current if key not in properties]
        remove_properties(conn, image_id, stale, call=ctx.call)
        image_api.add_tag(conn, image_id, naming.TAG, cancel=ctx.cancel.event)
        ctx.image_name = image.name
        ctx.image_properties = {k: str(v) for k, v in properties.items()}

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        return {"fingerprint": ctx.fingerprint}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        ctx.fingerprint = saved.record.get("fingerprint")
        if not saved.done:
            return self
        # The image as the dead run published it: the report, the webhook and
        # build.succeeded (its size, provenance, generation) read these, not Glance.
        image_id = ctx.require(ctx.image_id, "image_id")
        ctx.image_name = image_api.get_image(ctx.conn, image_id, cancel=ctx.cancel.event).name
        published = custom_properties(ctx.conn, image_id, call=ctx.call)
        ctx.image_properties = {k: str(v) for k, v in published.items()}
        return None
