"""Nova's server life cycle: schedule, spawn (hypervisor), run the guest, stop, start, delete."""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING, Any, Literal

from osbuild_sim import guest, hypervisor, storage
from osbuild_sim.http import ApiError
from osbuild_sim.records import Attachment, InstanceAction, Mapping, Port, Server, new_id
from osbuild_sim.world import USER_ID

if TYPE_CHECKING:
    from osbuild_sim.records import Flavor, Volume
    from osbuild_sim.world import World

log = logging.getLogger(__name__)

HOST = "sim-compute-1"
# Simulated durations (seconds).
SCHEDULE_SECONDS = 2.0
NETWORK_SECONDS = 2.0
SPAWN_SECONDS = 6.0
POWER_SECONDS = 4.0
# libvirt's lifecycle event reaches Nova some seconds after the guest powers off.
SHUTOFF_DELAY_SECONDS = 15.0
DELETE_SECONDS = 3.0
SNAPSHOT_START_SECONDS = 3.0
SNAPSHOT_SECONDS_PER_GB = 4.0
SNAPSHOT_DISK_FORMAT = "qcow2"  # what a default libvirt compute uploads (see create_image)
# nova-compute polls a volume it created 61 times, 3 s apart (block_device_allocate_retries).
VOLUME_POLL_ATTEMPTS = 61
VOLUME_POLL_INTERVAL = 3.0
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."

DISK_BUSES = ("fdc", "ide", "sata", "scsi", "usb", "virtio", "xen", "lxc", "uml")


def normalise_mappings(raw: list[dict[str, Any]]) -> list[Mapping]:
    mappings = []
    for entry in raw:
        boot_index = entry.get("boot_index")
        if boot_index is not None:
            boot_index = int(boot_index)
        destination = entry.get("destination_type") or (
            "volume" if entry.get("source_type") == "volume" else "local"
        )
        size = entry.get("volume_size")
        mappings.append(Mapping(
            boot_index=boot_index,
            source_type=entry.get("source_type") or "blank",
            destination_type=destination,
            device_type=entry.get("device_type") or "disk",
            disk_bus=entry.get("disk_bus"),
            uuid=entry.get("uuid"),
            volume_size=int(size) if size is not None else None,
            delete_on_termination=bool(entry.get("delete_on_termination", False)),
        ))
    return mappings


def check_compute_quota(world: World, flavor: Flavor) -> None:
    live = list(world.servers.values())
    checks = (
        ("instances", 1, len(live), "instances"),
        ("cores", flavor.vcpus, sum(s.flavor.vcpus for s in live), "cores"),
        ("ram", flavor.ram, sum(s.flavor.ram for s in live), "ram"),
    )
    for key, wanted, used, unit in checks:
        limit = world.faults.quota("compute", key)
        if limit >= 0 and used + wanted > limit:
            raise ApiError(403, f"Quota exceeded for {key}: Requested {wanted}, but already "
                                f"used {used} of {limit} {unit}")


def check_root_volume_bootable(world: World, root: Mapping) -> None:
    """Booting from a volume (no imageRef): Nova reads the boot_index 0 volume for the image
    metadata and refuses one Cinder does not mark bootable (nova 34,
    nova/block_device.py get_bdm_image_metadata; seen against real Nova and Cinder: a blank
    volume is created with bootable=false)."""
    volume = world.volumes.get(root.uuid or "")
    if volume is None:
        raise ApiError(400, f"Block Device Mapping is Invalid: failed to get volume "
                            f"{root.uuid}.")
    if not volume.bootable:
        raise ApiError(400, f"Block Device {volume.id} is not bootable.")


def reserve_volumes(world: World, server: Server) -> None:
    """API time: every source=volume mapping must name an available volume; Nova reserves it."""
    for mapping in server.mappings:
        if mapping.source_type != "volume":
            continue
        volume = world.volumes.get(mapping.uuid or "")
        if volume is None:
            raise ApiError(400, f"Block Device Mapping is Invalid: failed to get volume "
                                f"{mapping.uuid}.")
        if volume.status != "available":
            raise ApiError(400, f"Invalid volume: volume '{volume.id}' status must be "
                                f"'available'. Currently in '{volume.status}'")
    for mapping in server.mappings:
        if mapping.source_type == "volume":
            volume = world.volumes[mapping.uuid or ""]
            volume.status = "reserved"
            volume.reserved_by = server.id
            mapping.volume_id = volume.id


def start_build(world: World, server: Server) -> None:
    world.schedule(SCHEDULE_SECONDS, lambda: _scheduled(world, server))


def _alive(world: World, server: Server) -> bool:
    return world.servers.get(server.id) is server and server.task_state != "deleting"


def _error(world: World, server: Server, message: str, details: str = "") -> None:
    server.status = "ERROR"
    server.vm_state = "error"
    server.task_state = None
    server.fault = {"code": 500, "message": message, "details": details,
                    "created": world.stamp()}
    server.updated_at = world.stamp()
    server.guest = None
    server.next_event = None


def _scheduled(world: World, server: Server) -> None:
    if not _alive(world, server):
        return
    if world.faults.take("no_valid_host", server.name):
        _error(world, server, NO_VALID_HOST,
               "Traceback: nova.exception.NoValidHost: " + NO_VALID_HOST)
        return
    server.host = HOST
    server.task_state = "networking"
    server.updated_at = world.stamp()
    try:
        create_ports(world, server)
    except ApiError as exc:
        _error(world, server, f"Build of instance {server.id} aborted: {exc.message}")
        return
    world.schedule(NETWORK_SECONDS, lambda: _block_devices(world, server))


def _block_devices(world: World, server: Server) -> None:
    if not _alive(world, server):
        return
    server.task_state = "block_device_mapping"
    waiting: list[Volume] = []
    for index, mapping in enumerate(server.mappings):
        if mapping.destination_type != "volume" or mapping.source_type == "volume":
            continue
        try:
            volume = storage.create_volume(
                world, name=f"{server.name}-bdm-{index}", size=mapping.volume_size,
                image_id=mapping.uuid if mapping.source_type == "image" else None)
        except ApiError as exc:
            _error(world, server, f"Build of instance {server.id} aborted: {exc.message}")
            return
        mapping.volume_id = volume.id
        mapping.nova_created = True
        volume.reserved_by = server.id
        waiting.append(volume)
    _poll_volumes(world, server, waiting, attempt=1)


def _poll_volumes(world: World, server: Server, volumes: list[Volume], attempt: int) -> None:
    if not _alive(world, server):
        return
    for volume in volumes:
        if volume.status == "error" or (
            volume.status != "available" and attempt >= VOLUME_POLL_ATTEMPTS
        ):
            waited = int((attempt - 1) * VOLUME_POLL_INTERVAL)
            _error(world, server,
                   f"Build of instance {server.id} aborted: Volume {volume.id} did not finish "
                   f"being created even after we waited {waited} seconds or {attempt} "
                   f"attempts. And its status is {volume.status}.")
            return
    if all(v.status == "available" for v in volumes):
        for mapping in server.mappings:
            attached = world.volumes.get(mapping.volume_id or "")
            if attached is not None and attached.status in ("reserved", "available"):
                attached.status = "attaching"  # os-brick connects them before the spawn
        server.task_state = "spawning"
        world.schedule(SPAWN_SECONDS + _cache_root_images(world, server),
                       lambda: _spawn(world, server))
        return
    world.schedule(VOLUME_POLL_INTERVAL,
                   lambda: _poll_volumes(world, server, volumes, attempt + 1))


def _cache_root_images(world: World, server: Server) -> float:
    """Seconds nova-compute takes to put a local disk's image into its image cache before
    the spawn. On a miss the libvirt driver downloads the image file from Glance and
    converts it to raw (nova/virt/libvirt/imagebackend.py Image.cache -> fetch_to_raw;
    ``force_raw_images`` defaults to True, nova/conf/compute.py); later instances of the
    image on the host start from that base file behind a qcow2 overlay in seconds. Every
    build's verify server boots a new image, so it always misses (and nova removes a base
    unused for a day, ``remove_unused_original_minimum_age_seconds``, nova/conf/imagecache.py)."""
    seconds = 0.0
    for mapping in server.mappings:
        if mapping.source_type != "image" or mapping.destination_type != "local":
            continue
        image = world.images.get(mapping.uuid or "")
        if image is None or image.id in world.image_cache:
            continue
        world.image_cache.add(image.id)
        seconds += storage.DOWNLOAD_SECONDS_PER_GB * storage.stored_gib(image) / world.work_pace
    return seconds


def _kind(mapping: Mapping) -> Literal["disk", "cdrom"]:
    return "cdrom" if mapping.device_type == "cdrom" else "disk"


def _devices(world: World, server: Server) -> list[hypervisor.AttachedDevice]:
    devices = []
    for mapping in server.mappings:
        if mapping.volume_id:
            volume = world.volumes[mapping.volume_id]
            devices.append(hypervisor.AttachedDevice(
                kind=_kind(mapping), bus=mapping.disk_bus, boot_index=mapping.boot_index,
                source="volume", resource_id=volume.id, data=volume.data,
                image_meta=dict(volume.image_metadata)))
        elif mapping.source_type == "image":
            image = world.images.get(mapping.uuid or "")
            props = {k: str(v) for k, v in (image.properties if image else {}).items()}
            devices.append(hypervisor.AttachedDevice(
                kind=_kind(mapping), bus=mapping.disk_bus, boot_index=mapping.boot_index,
                source="image", resource_id=mapping.uuid, data=server.local_disk or b"",
                image_meta=props))
        else:
            devices.append(hypervisor.AttachedDevice(
                kind=_kind(mapping), bus=mapping.disk_bus, boot_index=mapping.boot_index,
                source="blank", resource_id=None, data=b"", image_meta={}))
    return devices


def _hw_props(
    world: World, server: Server, devices: list[hypervisor.AttachedDevice]
) -> dict[str, str]:
    if server.image_id:
        image = world.images.get(server.image_id)
        return {k: str(v) for k, v in (image.properties if image else {}).items()}
    for device in devices:
        if device.boot_index == 0:
            return dict(device.image_meta)
    return {}


def _machine(world: World, server: Server) -> hypervisor.Machine:
    devices = _devices(world, server)
    return hypervisor.build_machine(devices, _hw_props(world, server, devices))


def _spawn(world: World, server: Server) -> None:
    if not _alive(world, server):
        return
    try:
        machine = _machine(world, server)
    except hypervisor.SpawnError as exc:
        _error(world, server, str(exc))
        return
    stamp = world.stamp()
    for index, mapping in enumerate(server.mappings):
        if mapping.volume_id:
            volume = world.volumes[mapping.volume_id]
            volume.status = "in-use"
            volume.attachments = [Attachment(
                id=new_id(), volume_id=volume.id, server_id=server.id,
                device=f"/dev/vd{chr(ord('a') + index)}", attached_at=stamp)]
    for port_id in server.port_ids:
        if port_id in world.ports:
            world.ports[port_id].status = "ACTIVE"
    server.status = "ACTIVE"
    server.vm_state = "active"
    server.task_state = None
    server.power_state = 1
    server.launched_at = server.launched_at or stamp
    server.updated_at = stamp
    _power_on(world, server, machine)


def _power_on(world: World, server: Server, machine: hypervisor.Machine) -> None:
    key = world.keypairs.get(server.key_name or "")
    server.boots += 1
    rng = random.Random(f"{server.id}:{server.boots}")
    server.guest = iter(guest.boot(machine, public_key=key.public_key if key else None,
                                   scenario=server.scenario or guest.GuestScenario(), rng=rng,
                                   started_at=world.clock.wall(),
                                   metadata=guest.Metadata(
                                       user_data=server.user_data,
                                       config_drive=server.config_drive,
                                       network=bool(server.network_ids)),
                                   work_pace=world.work_pace,
                                   unread_hold=guest.SYSPREP_HOLD_WALL_FLOOR * world.clock.speed))
    server.powered_on_at = world.now()
    server.guest_delay = 0.0
    server.holding = None
    server.machine = machine
    server.domain_off = False
    _pull(server)


def _pull(server: Server) -> None:
    try:
        server.next_event = next(server.guest) if server.guest is not None else None
    except StopIteration:
        server.next_event = None
        server.guest = None
    except Exception as exc:  # a guest bug must not take the whole cloud down
        log.exception("simulated guest of server %s crashed", server.id)
        server.guest_error = f"{type(exc).__name__}: {exc}"
        server.next_event = None
        server.guest = None


def apply_next_guest_event(world: World, server: Server) -> None:
    event = server.next_event
    action = event.action
    if isinstance(action, guest.ConsoleOutput):
        server.console.write_line(action.text)
    elif isinstance(action, guest.WriteDisk):
        _write_boot_disk(world, server, action.data)
    elif isinstance(action, guest.PostPassword):
        # Nova takes one post per server: a second is 409 Conflict and the first stays
        # (nova/api/metadata/password.py handle_password).
        if not server.password:
            server.password = action.encrypted
    elif isinstance(action, guest.AwaitConsoleRead):
        if not _hold_over(world, server, action):
            return  # the same event is due again a little later
    elif isinstance(action, guest.PowerOff):
        server.guest = None
        server.next_event = None
        server.domain_off = True
        # Nova learns of the power-off only from libvirt's delayed lifecycle event: until
        # then the server still shows ACTIVE and RUNNING.
        world.schedule(SHUTOFF_DELAY_SECONDS, lambda: _shutoff(world, server),
                       at=world.guest_time(server, event.at))
        return
    _pull(server)


# How often a sysprep hold that waits for its marker to be read looks again (cloud seconds).
HOLD_RECHECK_SECONDS = 5.0


def _hold_over(world: World, server: Server, action: guest.AwaitConsoleRead) -> bool:
    """Whether the console was read since sysprep:start (or the hold may wait no longer);
    if not, the guest's remaining events move a little later."""
    if server.holding is None:
        server.holding = (world.guest_time(server, action.since),
                          world.guest_time(server, action.latest))
    written, latest = server.holding
    now = world.now()
    read = server.console_read_at
    if (read is not None and read >= written) or now >= latest:
        server.holding = None
        return True
    server.guest_delay += min(HOLD_RECHECK_SECONDS, latest - now)
    return False


def _write_boot_disk(world: World, server: Server, data: bytes) -> None:
    machine = getattr(server, "machine", None)
    index = hypervisor.boot_disk_index(machine) if machine is not None else None
    if index is None or index >= len(server.mappings):
        log.warning("server %s wrote a disk it does not have", server.id)
        return
    mapping = server.mappings[index]
    if mapping.volume_id and mapping.volume_id in world.volumes:
        world.volumes[mapping.volume_id].data = data
    else:
        server.local_disk = data


def _shutoff(world: World, server: Server) -> None:
    if not _alive(world, server) or server.status not in ("ACTIVE",):
        return
    server.status = "SHUTOFF"
    server.vm_state = "stopped"
    server.task_state = None
    server.power_state = 4
    server.updated_at = world.stamp()


# -- actions ----------------------------------------------------------------------------------
def _invalid_state(server: Server, action: str) -> ApiError:
    if server.task_state:
        return ApiError(409, f"Cannot '{action}' instance {server.id} while it is in "
                             f"task_state {server.task_state}")
    return ApiError(409, f"Cannot '{action}' instance {server.id} while it is in vm_state "
                         f"{server.vm_state}")


def stop(world: World, server: Server) -> None:
    if server.task_state or server.vm_state not in ("active", "error"):
        raise _invalid_state(server, "stop")
    server.task_state = "powering-off"

    def done() -> None:
        if not _alive(world, server):
            return
        server.guest = None
        server.next_event = None
        server.status, server.vm_state = "SHUTOFF", "stopped"
        server.task_state, server.power_state = None, 4
        server.updated_at = world.stamp()

    world.schedule(POWER_SECONDS, done)


def start(world: World, server: Server) -> None:
    if server.task_state or server.vm_state != "stopped":
        raise _invalid_state(server, "start")
    server.task_state = "powering-on"

    def done() -> None:
        if not _alive(world, server):
            return
        server.console.truncate()  # QEMU restarts: libvirt starts a new log
        server.status, server.vm_state = "ACTIVE", "active"
        server.task_state, server.power_state = None, 1
        server.updated_at = world.stamp()
        try:
            machine = _machine(world, server)
        except hypervisor.SpawnError as exc:
            _error(world, server, str(exc))
            return
        _power_on(world, server, machine)

    world.schedule(POWER_SECONDS, done)


def delete(world: World, server: Server) -> None:
    if server.task_state == "deleting":
        return
    server.task_state = "deleting"
    server.updated_at = world.stamp()
    server.guest = None
    server.next_event = None

    def gone() -> None:
        world.servers.pop(server.id, None)
        for port_id in server.port_ids:
            world.ports.pop(port_id, None)
        for mapping in server.mappings:
            volume = world.volumes.get(mapping.volume_id or "")
            if volume is not None:
                storage.release_volume(world, volume, delete=mapping.delete_on_termination)

    world.schedule(DELETE_SECONDS, gone)


def console_output(world: World, server: Server, length: int | None) -> str:
    if not server.host:
        raise ApiError(409, f"Instance {server.id} is not ready")
    # libvirt's default pty console: once the domain is shut off its XML has no pty path and
    # Nova's libvirt driver raises ConsoleNotAvailable (nova/virt/libvirt/driver.py,
    # get_console_output), so the API answers 404 from the power-off on, before Nova shows
    # SHUTOFF. Measured with real Nova 34 (shared/docs/real-services.md, openstack-facts.md).
    if (server.domain_off or server.vm_state in ("stopped", "error")
            or server.task_state == "deleting"):
        raise ApiError(404, "Guest does not have a console available.")
    server.console_read_at = world.now()
    return server.console.output(length)


# What a snapshot whose upload Glance refused leaves: an instance fault (nova/compute/
# manager.py _snapshot_instance is @wrap_instance_fault) with the exception's class name as
# its message (compute/utils.py exception_to_dict: glanceclient's exception is re-raised
# untranslated by nova/image/glance.py). Nova shows a fault only on an ERROR or DELETED
# server (api/openstack/compute/views/servers.py _fault_statuses): the project never sees it.
SNAPSHOT_FAILED_MESSAGE = "HTTPInternalServerError"


def create_image(world: World, server: Server, name: str, metadata: dict[str, str], *,
                 action: InstanceAction | None = None) -> str:
    """Nova createImage; ``action`` (the request's instance action) gets the compute
    event of a snapshot of a local disk, compute_snapshot_instance, which Nova 34 finishes
    as a success as soon as it has started the snapshot as a task of its own (nova/compute/
    manager.py snapshot_instance, _start_recorded_task): a failed upload never shows in the
    action (seen against real Nova: tests/functional/test_real_nova.py)."""
    if server.vm_state not in ("active", "stopped", "paused", "suspended") or server.task_state:
        raise _invalid_state(server, "createImage")
    root = next((m for m in server.mappings if m.boot_index == 0), None)
    storage.check_image_quota(world, new_images=1)
    if root is not None and root.volume_id:
        # The API makes the volume snapshots itself: no compute event.
        return _snapshot_volume_backed(world, server, name, metadata)
    if action is not None:
        started = world.stamp()
        action.finish_event(action.start_event("compute_snapshot_instance", started,
                                               server.host), started)
    base = world.images.get(server.image_id or "")
    props = {k: v for k, v in (base.properties if base else {}).items()}
    props.update(metadata)
    # Nova 34 (compute/api.py, snapshot metadata from the instance's system metadata), seen
    # against real Nova: the base image's properties plus where the snapshot came from.
    props.update(image_type="snapshot", instance_uuid=server.id,
                 base_image_ref=server.image_id or "", owner_project_name="admin",
                 owner_user_name="admin", boot_roles="member,reader",
                 image_location="snapshot", user_id=USER_ID)
    # The libvirt driver uploads the instance's disk in [libvirt] snapshot_image_format, unset
    # by default, so in the disk's own format (nova/virt/libvirt/driver.py snapshot():
    # ``CONF.libvirt.snapshot_image_format or source_type``): qcow2, the overlay that
    # use_cow_images (default True) puts on the cached base, whatever the base image's format.
    image = storage.new_image(world, name, disk_format=SNAPSHOT_DISK_FORMAT,
                              container_format="bare", visibility="private",
                              properties=props, min_disk=server.flavor.disk,
                              min_ram=base.min_ram if base else 0)
    server.task_state = "image_snapshot"
    killed = world.faults.take("image_killed", name) is not None
    data = server.local_disk or b""

    def uploading() -> None:
        if image.id in world.images:
            image.status = "saving"
        if _alive(world, server):
            server.task_state = "image_uploading"

    def done() -> None:
        if _alive(world, server) and server.task_state == "image_uploading":
            server.task_state = None
        if image.id not in world.images or image.status != "saving":
            return
        image.updated_at = world.stamp()
        if killed:
            # nova/compute/manager.py: snapshot_instance is @delete_image_on_error.
            image.status = "deleted"
            world.images.pop(image.id, None)
            if _alive(world, server):
                server.fault = {"code": 500, "message": SNAPSHOT_FAILED_MESSAGE,
                                "details": "", "created": world.stamp()}
            return
        image.data = data
        image.status = "active"
        storage.finalize_image_data(image, disk_gib=server.flavor.disk)

    world.schedule(SNAPSHOT_START_SECONDS, uploading)
    world.schedule(SNAPSHOT_START_SECONDS
                   + SNAPSHOT_SECONDS_PER_GB * server.flavor.disk / world.work_pace, done)
    return image.id


def _snapshot_volume_backed(world: World, server: Server, name: str,
                            metadata: dict[str, str]) -> str:
    """Nova's createImage on a volume-backed server: 0 bytes, Cinder snapshots of each volume."""
    bdms = []
    for mapping in server.mappings:
        volume = world.volumes.get(mapping.volume_id or "")
        if volume is None:
            continue
        snap = storage.snapshot_volume(world, volume, f"snapshot for {name}")
        bdms.append({"source_type": "snapshot", "destination_type": "volume",
                     "snapshot_id": snap.id, "volume_size": volume.size,
                     "boot_index": mapping.boot_index, "device_type": mapping.device_type,
                     "disk_bus": mapping.disk_bus,
                     "delete_on_termination": mapping.delete_on_termination})
    root_meta = next((world.volumes[m.volume_id].image_metadata for m in server.mappings
                      if m.boot_index == 0 and m.volume_id in world.volumes), {})
    props = {k: v for k, v in root_meta.items() if k not in storage._GLANCE_CORE}
    props.update(metadata)
    props.update(block_device_mapping=json.dumps(bdms), bdm_v2="True",
                 root_device_name="/dev/vda", image_type="snapshot", instance_uuid=server.id)
    image = storage.new_image(world, name, disk_format="qcow2", container_format="bare",
                              visibility="private", properties=props, data=b"")
    image.status = "active"
    storage.finalize_image_data(image)
    return image.id


def create_ports(world: World, server: Server) -> None:
    """Nova asks Neutron for one port per requested network once a host is chosen."""
    limit = world.faults.quota("network", "port")
    if limit >= 0 and len(world.ports) + len(server.network_ids) > limit:
        raise ApiError(403, "Maximum number of ports exceeded")
    for index, network_id in enumerate(server.network_ids):
        subnet_id = world.networks[network_id].subnets[0]
        host_part = 10 + (len(world.ports) % 240)
        mac = f"fa:16:3e:{index:02x}:{host_part:02x}:{len(world.ports) % 256:02x}"
        port = Port(id=new_id(), network_id=network_id, mac_address=mac,
                    fixed_ips=[{"subnet_id": subnet_id, "ip_address": f"10.0.0.{host_part}"}],
                    device_id=server.id, device_owner="compute:nova",
                    security_groups=list(server.security_groups), created_at=world.stamp())
        world.ports[port.id] = port
        server.port_ids.append(port.id)
