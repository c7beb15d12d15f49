"""Boot the builder server: target disk first, the Windows ISO as the first cdrom.

Mappings follow openstack-facts: boot index 0 is the target disk (a blank disk falls
through to the cdrom at boot index 1, the Windows installer); the VirtIO and config ISOs
are attached but not bootable; no volume is deleted with the server (the target is
captured afterwards, the ISO volumes are this build's and deleted by their step).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from osbuild import naming
from osbuild.cloud import compute
from osbuild.cloud.clock import Deadline
from osbuild.cloud.delete import delete_server
from osbuild.cloud.retry import HttpError, api_message, is_not_found, status_of
from osbuild.errors import ServerFault
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.create import create_behind_lookup
from osbuild.pipeline.hardware import hardware_properties
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.pipeline.temp_image import upload_temporary_image
from osbuild.pipeline.waits import wait_for_status
from osbuild.unattended.lock import drop_heartbeat

# A blank raw image for the local target's root disk: Nova grows it to the flavor's disk.
BLANK_ROOT_BYTES = b"\0" * (1024 * 1024)


CDROM = {"source_type": "volume", "destination_type": "volume", "device_type": "cdrom",
         "disk_bus": "sata", "delete_on_termination": False}


def target_mapping(ctx: BuildContext, volume_id: str | None) -> dict[str, Any]:
    return {"boot_index": 0, "uuid": volume_id, "source_type": "volume",
            "destination_type": "volume", "device_type": "disk",
            "disk_bus": ctx.spec.builder.disk_bus, "delete_on_termination": False}


def server_fault(server: compute.Server) -> str:
    return server.fault or "no fault recorded"


class BootBuilder(Resumable):
    name = "boot"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.spec
        conn = ctx.conn
        resolved = ctx.require(ctx.resolved, "resolved")
        mappings, image_id = self.mappings(ctx)
        name = naming.resource_name(ctx.build_id, "builder")
        tag = naming.build_tag(ctx.build_id)
        metadata = {
            **naming.labels(ctx.build_id, spec.name, "builder"),
            naming.PROP_HEARTBEAT: datetime.now(UTC).isoformat(timespec="seconds"),
        }
        create_args: dict[str, Any] = {
            "name": name,
            "flavor_id": resolved.flavor_id,
            "block_device_mapping": mappings,
            "networks": [{"uuid": resolved.network_id}] if resolved.network_id else "none",
            "tags": [naming.TAG, tag],
            "metadata": metadata,
        }
        if image_id:
            create_args["image_id"] = image_id
        create_args.update(self.extra_args(ctx))
        if spec.builder.availability_zone:
            create_args["availability_zone"] = spec.builder.availability_zone

        def lookup() -> compute.Server | None:
            found = compute.servers(conn, tag=tag, cancel=ctx.cancel.event)
            return found[0] if found else None

        try:
            server = create_behind_lookup(
                ctx, lambda: compute.create_server(conn, **create_args), lookup,
                what="the builder server",
            )
        except HttpError as exc:
            status = status_of(exc)
            if status is None or not 400 <= status < 500:
                raise
            # Nova's own words, not the SDK's "BadRequestException: 400: ... for url".
            raise ServerFault(f"Nova refused to create the builder server: "
                              f"{api_message(exc)}", stage=self.name) from None
        builder = ctx.track("server", server.id, name,
                            lambda: delete_server(conn, server.id))
        builder.on_keep = lambda: drop_heartbeat(conn, server.id)
        ctx.server_id = server.id
        wait_for_status(
            ctx, lambda: compute.get_server(conn, server.id,
                                            cancel=ctx.cancel.event), want="active",
            failures=("error",),
            deadline=Deadline.after(ctx.clock, spec.builder.stage_timeouts.boot,
                                    "server boot", setting="builder.stage_timeouts.boot"),
            what=f"builder server {server.id}", on_failure=server_fault,
            interval=ctx.options.poll_min / 2, error=ServerFault,
        )

    def mappings(self, ctx: BuildContext) -> tuple[list[dict[str, Any]], str | None]:
        """The block device mappings, and the image of a local root disk (else None)."""
        spec = ctx.spec
        volumes = ctx.require(ctx.volumes, "volumes")
        mappings: list[dict[str, Any]] = []
        image_id = None
        if spec.builder.target == "volume":
            mappings.append(target_mapping(ctx, volumes.target))
        else:
            image_id = self._root_image(ctx)
            mappings.append({
                "boot_index": 0, "uuid": image_id, "source_type": "image",
                "destination_type": "local", "device_type": "disk",
                "disk_bus": spec.builder.disk_bus, "delete_on_termination": True,
            })
        mappings.append({**CDROM, "boot_index": 1, "uuid": volumes.windows_iso})
        mappings.append({**CDROM, "boot_index": -1, "uuid": volumes.virtio_iso})
        mappings.append({**CDROM, "boot_index": -1, "uuid": volumes.config_iso})
        return mappings, image_id

    def extra_args(self, ctx: BuildContext) -> dict[str, Any]:
        """More of the create request (a refresh's user data)."""
        return {}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        ctx.server_id = saved.resources.get("server:builder")
        ctx.root_image_id = saved.resources.get("image:root")
        if saved.done:
            return None
        if ctx.server_id and _exists(ctx, ctx.server_id):
            builder = ctx.find_resource("server", ctx.server_id)
            if builder is not None:  # adopted: kept as run keeps it
                server_id = ctx.server_id
                builder.on_keep = lambda: drop_heartbeat(ctx.conn, server_id)
            return None  # the builder is up: watch it rather than boot another
        return self

    def _root_image(self, ctx: BuildContext) -> str:
        """A tiny blank image carrying the hardware properties, for a local root disk."""
        ctx.root_image_id = upload_temporary_image(
            ctx, role="root", disk_format="raw", data=BLANK_ROOT_BYTES,
            properties=hardware_properties(ctx), timeout=600.0)
        return ctx.root_image_id


def _exists(ctx: BuildContext, server_id: str) -> bool:
    try:
        compute.get_server(ctx.conn, server_id, cancel=ctx.cancel.event)
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise
    return True
