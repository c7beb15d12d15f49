"""Create the builder's volumes concurrently: the three ISOs as cdroms and the target disk.

Nova could create the ISO volumes itself, but nova-compute gives up after about three
minutes and a 5 GB ISO often takes longer, so they are created here and waited for.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from osbuild import naming
from osbuild.cloud import volumes as volume_api
from osbuild.cloud.clock import Deadline
from osbuild.cloud.delete import delete_volume
from osbuild.errors import InvalidInput, ResourceFailed
from osbuild.pipeline.context import BuildContext, BuilderVolumes
from osbuild.pipeline.create import create_behind_lookup
from osbuild.pipeline.events import EventName
from osbuild.pipeline.hardware import hardware_properties
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.pipeline.waits import wait_for_status

GIB = 1024**3


@dataclass(frozen=True)
class Wanted:
    role: str
    size_gb: int
    image_id: str | None  # None: a blank volume


def config_volume(ctx: BuildContext) -> Wanted:
    size = max(1, math.ceil(ctx.media_facts().size / GIB))
    return Wanted("config", size, ctx.require(ctx.config_image_id, "config_image_id"))


class CreateVolumes(Resumable):
    name = "volumes"
    # The volumes a resumed build cannot go on without.
    needed: tuple[str, ...] = ("iso", "virtio", "config")

    def run(self, ctx: BuildContext) -> None:
        wanted = self.wanted(ctx)
        deadline = Deadline.after(ctx.clock, ctx.spec.builder.stage_timeouts.volumes,
                                  "volumes", setting="builder.stage_timeouts.volumes")
        with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            ids = list(pool.map(lambda w: self._create_ready(ctx, w, deadline), wanted))
        by_role = {w.role: vid for w, vid in zip(wanted, ids, strict=True)}
        ctx.volumes = BuilderVolumes(
            windows_iso=by_role.get("iso"),
            virtio_iso=by_role.get("virtio"),
            config_iso=by_role["config"],
            target=by_role.get("target"),
        )
        if ctx.volumes.target:
            # Cinder creates a blank volume with bootable=false and Nova refuses it at boot
            # index 0 ("Block Device ... is not bootable", nova/block_device.py
            # get_bdm_image_metadata); the firmware then falls through to the Windows ISO.
            volume_api.set_bootable(ctx.conn, ctx.volumes.target, cancel=ctx.cancel.event)
            # The target volume's image metadata is what Nova builds the machine from
            # (boot index 0), and what upload-to-image carries into the image.
            volume_api.set_image_metadata(ctx.conn, ctx.volumes.target,
                                          hardware_properties(ctx), cancel=ctx.cancel.event)

    def wanted(self, ctx: BuildContext) -> list[Wanted]:
        """The volumes to create: the ISOs as cdroms, the config ISO, a blank target."""
        resolved = ctx.require(ctx.resolved, "resolved")
        windows = ctx.require(resolved.windows_iso, "windows_iso")
        virtio = ctx.require(resolved.virtio_iso, "virtio_iso")
        wanted = [
            Wanted("iso", windows.volume_gb, windows.id),
            Wanted("virtio", virtio.volume_gb, virtio.id),
            config_volume(ctx),
        ]
        if ctx.spec.builder.target == "volume":
            wanted.append(Wanted("target", ctx.spec.builder.disk_gb, None))
        return wanted

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        if not saved.done:
            return self  # what it had created is adopted and deleted at the end
        found = {role: saved.resource("volume", role)
                 for role in ("iso", "virtio", "config", "target")}
        # The release step deletes them once the disk is an image: a resume after that
        # finds some or none, and needs none.
        missing = [role for role in self.needed
                   if found[role] is None and not saved.was_released("volume", role)]
        if missing:
            raise InvalidInput([f"the state records no {', '.join(missing)} volume"])
        ctx.volumes = BuilderVolumes(found["iso"], found["virtio"], found["config"] or "",
                                     found["target"])
        return None

    def _create_ready(self, ctx: BuildContext, wanted: Wanted, deadline: Deadline) -> str:
        """Create one volume and wait for it; a volume that errors is recreated once."""
        for attempt in (1, 2):
            volume_id = self._create(ctx, wanted, attempt)
            try:
                self._wait_available(ctx, volume_id, wanted.role, deadline)
                return volume_id
            except ResourceFailed as exc:
                if attempt == 2:
                    raise
                # Cinder's failures to copy an image are often transient (backend busy).
                ctx.emit(EventName.WARNING, message=f"{exc}; deleting it and creating the "
                                                    f"{wanted.role} volume again")
                resource = ctx.find_resource("volume", volume_id)
                if resource is not None:
                    ctx.delete_now(resource)
        raise AssertionError("unreachable")

    def _wait_available(self, ctx: BuildContext, volume_id: str, role: str,
                        deadline: Deadline) -> None:
        wait_for_status(
            ctx, lambda: volume_api.get_volume(ctx.conn, volume_id,
                                               cancel=ctx.cancel.event),
            want="available", failures=("error",), deadline=deadline,
            what=f"{role} volume {volume_id}",
            on_failure=lambda _v: volume_api.user_message(ctx.conn, volume_id,
                                                          cancel=ctx.cancel.event),
        )

    def _create(self, ctx: BuildContext, wanted: Wanted, attempt: int) -> str:
        conn = ctx.conn
        name = naming.resource_name(ctx.build_id, wanted.role)
        if attempt > 1:
            name += f"-{attempt}"
        metadata = naming.labels(ctx.build_id, ctx.spec.name, wanted.role)
        args: dict[str, object] = {
            "name": name,
            "size": wanted.size_gb,
            "metadata": metadata,
        }
        if wanted.image_id:
            args["image_id"] = wanted.image_id
        if ctx.spec.builder.volume_type:
            args["volume_type"] = ctx.spec.builder.volume_type
        if ctx.spec.builder.availability_zone:
            args["availability_zone"] = ctx.spec.builder.availability_zone

        def lookup() -> volume_api.Volume | None:
            found = volume_api.volumes(conn, name=name, cancel=ctx.cancel.event)
            return found[0] if found else None

        volume = create_behind_lookup(
            ctx, lambda: volume_api.create_volume(conn, **args), lookup,
            what=f"the {wanted.role} volume",
        )
        ctx.track("volume", volume.id, name,
                  lambda: delete_volume(conn, volume.id))
        return str(volume.id)
