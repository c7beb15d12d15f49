"""Cinder volume and Glance image state machines (creating, downloading, uploading, killed...)."""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from osbuild_sim.http import ApiError
from osbuild_sim.records import Image, Snapshot, UserMessage, Volume, new_id
from osbuild_sim.world import PROJECT_ID

if TYPE_CHECKING:
    from osbuild_sim.world import World

GIB = 1024**3
# Simulated durations (seconds), realistic for a real cloud.
BLANK_VOLUME_SECONDS = 3.0
VOLUME_DELETE_SECONDS = 2.0
DOWNLOAD_START_SECONDS = 4.0
DOWNLOAD_SECONDS_PER_GB = 10.0  # a 6 GB ISO volume: about a minute
CLONE_SECONDS_PER_GB = 2.0
UPLOAD_START_SECONDS = 5.0
UPLOAD_SECONDS_PER_GB = 6.0  # a 30 GB target: about 3 minutes
DETACH_SECONDS = 2.0

VOLUME_DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
# Image attributes Cinder keeps in volume_image_metadata but does not pass on as properties
# (cinder/image/glance.py: the glance_core_properties default).
_GLANCE_CORE = ("checksum", "container_format", "disk_format", "image_name", "image_id",
                "min_disk", "min_ram", "name", "size")
# Prefixes Cinder never copies into an image (cinder/image/image_utils.py:
# GLANCE_RESERVED_NAMESPACES, applied by filter_out_reserved_namespaces_metadata).
_GLANCE_RESERVED = ("os_glance", "img_signature", "signature_verified")
# After Glance has the data (image active), Cinder's volume manager sets the volume's
# status back (copy_volume_to_image's finally): the image is active a moment first.
UPLOAD_STATUS_LAG_SECONDS = 1.0
QUOTA_HEADERS = {"Retry-After": "0"}  # cinder/exception.py QuotaError.headers
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")


# -- images ------------------------------------------------------------------------------------
def finalize_image_data(image: Image, *, disk_gib: int | None = None) -> None:
    """Checksums of the data; for a capture of a ``disk_gib`` disk, its stored and virtual
    size as Glance reports them (the simulated guest's disk record says what it wrote)."""
    data = image.data or b""
    image.checksum = hashlib.md5(data, usedforsecurity=False).hexdigest()
    image.os_hash_value = hashlib.sha512(data).hexdigest()
    if disk_gib is not None:
        from osbuild_sim import disk_usage
        from osbuild_sim.guest import read_disk_record

        image.virtual_size = disk_gib * disk_usage.GIB
        image.stored_size = disk_usage.captured_size(
            read_disk_record(data), image.disk_format or "raw", image.virtual_size)


def format_matches(disk_format: str | None, data: bytes) -> bool:
    """Glance's upload-time format inspection, for the formats with a signature."""
    if disk_format == "iso":
        # The primary volume descriptor sits at 32 KiB: type byte, then "CD001".
        return data[32769:32774] == b"CD001"
    if disk_format == "qcow2":
        return data[:4] == b"QFI\xfb"
    if disk_format == "vmdk":
        return data[:4] == b"KDMV"
    if disk_format == "vhdx":
        return data[:8] == b"vhdxfile"
    return True


def check_image_quota(world: World, *, new_images: int = 0, new_bytes: int = 0) -> None:
    owned = [i for i in world.images.values() if i.owner == PROJECT_ID and not i.seeded]
    count_limit = world.faults.quota("image", "image_count_total")
    if new_images and count_limit >= 0 and len(owned) + new_images > count_limit:
        raise ApiError(413, f"Resource image_count_total is over limit of {count_limit} due "
                            f"to current usage {len(owned)} and delta {new_images}")
    size_limit = world.faults.quota("image", "image_size_total")
    if new_bytes and size_limit >= 0:
        used = sum(len(i.data or b"") for i in owned) // (1024 * 1024)
        delta = math.ceil(new_bytes / (1024 * 1024))
        if used + delta > size_limit:
            raise ApiError(413, f"Resource image_size_total is over limit of {size_limit} due "
                                f"to current usage {used} and delta {delta}")


def new_image(world: World, name: str, **fields: Any) -> Image:
    stamp = world.stamp()
    image = Image(id=new_id(), name=name, owner=PROJECT_ID, created_at=stamp, updated_at=stamp,
                  **fields)
    world.images[image.id] = image
    return image


def set_image_data(world: World, image: Image, data: bytes) -> None:
    """A direct upload (PUT .../file): inspection, quota, then active or killed."""
    if image.status != "queued":
        raise ApiError(409, f"Image status transition from {image.status} to saving is not "
                            "allowed")
    if not image.disk_format or not image.container_format:
        raise ApiError(400, "Properties disk_format, container_format must be set prior to "
                            "saving data.")
    check_image_quota(world, new_bytes=len(data))
    if not format_matches(image.disk_format, data):
        # Real Glance refuses and restores the image to queued.
        raise ApiError(415, f"Image disk_format is {image.disk_format} but the uploaded data "
                            "does not match it")
    if world.faults.take("image_killed", image.name):
        # Glance restores an image whose upload failed to queued, so the same PUT may be
        # tried again (glance/api/v2/image_data.py ImageDataController.upload, _restore).
        image.updated_at = world.stamp()
        raise ApiError(500, "The server has either erred or is incapable of performing the "
                            "requested operation.")
    image.data = data
    image.status = "active"
    image.updated_at = world.stamp()
    finalize_image_data(image)


def delete_image(world: World, image: Image) -> None:
    if image.protected:
        raise ApiError(403, f"Image {image.id} is protected and cannot be deleted.")
    image.status = "deleted"
    del world.images[image.id]


# -- volumes -----------------------------------------------------------------------------------
def _gib(nbytes: int) -> int:
    return max(1, math.ceil(nbytes / GIB))


def check_volume_quota(world: World, size: int, count: int = 1) -> None:
    used = [v for v in world.volumes.values()]
    limit = world.faults.quota("volume", "volumes")
    if limit >= 0 and len(used) + count > limit:
        raise ApiError(413, f"VolumeLimitExceeded: Maximum number of volumes allowed ({limit}) "
                            "exceeded for quota 'volumes'.", headers=dict(QUOTA_HEADERS))
    gb_limit = world.faults.quota("volume", "gigabytes")
    consumed = sum(v.size for v in used)
    if gb_limit >= 0 and consumed + size > gb_limit:
        raise ApiError(413, "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot "
                            f"exceeds allowed gigabytes quota. Requested {size}G, quota is "
                            f"{gb_limit}G and {consumed}G has been consumed.",
                       headers=dict(QUOTA_HEADERS))


def create_volume(
    world: World,
    *,
    name: str,
    size: int | None,
    image_id: str | None = None,
    source_volid: str | None = None,
    snapshot_id: str | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    volume_type: str | None = None,
    availability_zone: str | None = None,
) -> Volume:
    if image_id and source_volid:
        raise ApiError(400, "Invalid input received: Only one of image_id, source_volid, "
                            "snapshot_id may be specified.")
    if availability_zone not in (None, "nova"):
        raise ApiError(400, f"Invalid input received: Availability zone '{availability_zone}' "
                            "is invalid.")
    if volume_type not in (None, "__DEFAULT__"):
        raise ApiError(404, f"Volume type with name {volume_type} could not be found.")
    image = source = None
    if image_id:
        image = world.images.get(image_id)
        if image is None:
            raise ApiError(400, f"Invalid image identifier or unable to access requested image. "
                                f"(image_id: {image_id})")
        if image.status != "active":
            raise ApiError(400, f"Invalid input received: Image {image_id} is not active.")
    if source_volid:
        source = world.volumes.get(source_volid)
        if source is None:
            raise ApiError(404, f"Volume {source_volid} could not be found.")
        if source.status not in ("available", "in-use"):
            raise ApiError(400, f"Invalid volume: Volume {source_volid} status must be "
                                f"available or in-use, but current status is: {source.status}.")
    if size is None:
        size = source.size if source else (_gib(len(image.data or b"")) if image else None)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ApiError(400, "Invalid input received: Volume size must be an integer and "
                            "greater than 0")
    if image is not None:
        needed = max(_gib(len(image.data or b"")), image.min_disk)
        if needed > size:
            raise ApiError(400, f"Invalid input received: Size of specified image {needed}GB "
                                f"is larger than volume size {size}GB.")
        # cinder/volume/volume_utils.py check_image_metadata, then image_utils.py
        # check_virtual_size: a captured 40 GB disk does not go into a 30 GB volume, whatever
        # its min_disk says (a refresh published min_disk 30 for one: session 30).
        virtual = math.ceil((image.virtual_size or 0) / GIB)
        if virtual > size:
            raise ApiError(400, f"Image {image.id} is unacceptable: Image virtual size is "
                                f"{virtual}GB and doesn't fit in a volume of size {size}GB.")
    if source is not None and size < source.size:
        raise ApiError(400, f"Invalid input received: Volume size '{size}'GB cannot be smaller "
                            f"than original volume size {source.size}GB. They must be >= "
                            "original volume size.")
    check_volume_quota(world, size)
    stamp = world.stamp()
    volume = Volume(id=new_id(), name=name, size=size, description=description,
                    metadata=dict(metadata or {}), image_id=image_id, source_volid=source_volid,
                    snapshot_id=snapshot_id, created_at=stamp, updated_at=stamp)
    world.volumes[volume.id] = volume
    if image is not None:
        _download(world, volume, image)
    elif source is not None:
        data, meta = source.data, dict(source.image_metadata)
        world.schedule(5.0 + CLONE_SECONDS_PER_GB * size / world.work_pace,
                       lambda: _became_available(world, volume, data, meta, source.bootable))
    else:
        world.schedule(BLANK_VOLUME_SECONDS,
                       lambda: _became_available(world, volume, b"", {}, False))
    return volume


def _download(world: World, volume: Volume, image: Image) -> None:
    fails = world.faults.take("volume_error_from_image", volume.name) is not None
    data = image.data or b""
    meta = {k: str(v) for k, v in image.properties.items()}
    meta.update(image_id=image.id, image_name=image.name, checksum=image.checksum or "",
                container_format=image.container_format or "",
                disk_format=image.disk_format or "", min_disk=str(image.min_disk),
                min_ram=str(image.min_ram), size=str(len(data)))
    # verify_glance_signatures defaults to enabled: Cinder records the (negative) verdict
    # for an unsigned image (cinder/volume/flows/manager/create_volume.py).
    meta["signature_verified"] = "False"

    def start() -> None:
        if volume.id in world.volumes and volume.status == "creating":
            volume.status = "downloading"
            volume.updated_at = world.stamp()

    def finish() -> None:
        if volume.id not in world.volumes or volume.status != "downloading":
            return
        if fails:
            volume.status = "error"
            volume.updated_at = world.stamp()
            add_user_message(world, volume.id, "VOLUME_VOLUME_001_003",
                             "create volume from image: An unknown error occurred.")
            return
        _became_available(world, volume, data, meta, True)

    world.schedule(DOWNLOAD_START_SECONDS, start)
    world.schedule(DOWNLOAD_START_SECONDS
                   + DOWNLOAD_SECONDS_PER_GB * _copied_gib(image, volume) / world.work_pace,
                   finish)


def _copied_gib(image: Image, volume: Volume) -> float:
    """What Cinder's generic create-from-image moves: it downloads the image file (the bytes
    Glance stores) into image_conversion_dir, then `qemu-img convert`s it onto the volume,
    skipping zeros (cinder/image/image_utils.py fetch_to_volume_format, called from
    cinder/volume/flows/manager/create_volume.py _create_from_image_download when neither
    the driver's clone_image nor the image-volume cache applies). A captured qcow2 holds the
    disk's non-zero blocks only; uploaded data (an ISO) is taken to fill its volume."""
    if image.stored_size is None:
        return float(volume.size)
    return max(1.0, stored_gib(image))


def stored_gib(image: Image) -> float:
    """The GiB Glance stores (and serves) for the image."""
    stored = image.stored_size if image.stored_size is not None else len(image.data or b"")
    return stored / GIB


def _became_available(world: World, volume: Volume, data: bytes, meta: dict[str, str],
                      bootable: bool) -> None:
    if volume.id not in world.volumes or volume.status not in ("creating", "downloading"):
        return
    volume.data = data
    volume.image_metadata = dict(meta)
    volume.bootable = bootable
    volume.status = "available"
    volume.updated_at = world.stamp()


def add_user_message(world: World, resource_id: str, event_id: str, text: str) -> None:
    message = UserMessage(id=new_id(), event_id=event_id, user_message=text,
                          resource_uuid=resource_id, resource_type="VOLUME",
                          created_at=world.stamp())
    world.messages[message.id] = message


def delete_volume(world: World, volume: Volume, *, cascade: bool = False) -> None:
    has_snapshots = any(s.volume_id == volume.id for s in world.snapshots.values())
    if volume.status not in VOLUME_DELETABLE or volume.attachments or (
        has_snapshots and not cascade
    ):
        raise ApiError(400, "Invalid volume: Volume status must be available or error or "
                            "error_restoring or error_extending or error_managing and must not "
                            "be migrating, attached, belong to a group, have snapshots, awaiting "
                            "a transfer, or be disassociated from snapshots after volume "
                            "transfer.")
    _start_delete(world, volume)


def _start_delete(world: World, volume: Volume) -> None:
    volume.status = "deleting"
    volume.updated_at = world.stamp()

    def gone() -> None:
        for snap in [s for s in world.snapshots.values() if s.volume_id == volume.id]:
            del world.snapshots[snap.id]
        world.volumes.pop(volume.id, None)

    world.schedule(VOLUME_DELETE_SECONDS, gone)


def release_volume(world: World, volume: Volume, *, delete: bool) -> None:
    """Nova let go of the volume (server deleted): detach, then delete if it owned it."""
    volume.reserved_by = None
    was_attached = bool(volume.attachments)
    volume.attachments.clear()
    if volume.status in ("reserved", "attaching", "in-use", "detaching"):
        volume.status = "detaching" if was_attached else "available"
    volume.updated_at = world.stamp()

    def done() -> None:
        if volume.id not in world.volumes:
            return
        if volume.status == "detaching":
            volume.status = "available"
        if delete and volume.status in VOLUME_DELETABLE:
            _start_delete(world, volume)

    world.schedule(DETACH_SECONDS if was_attached else 0.0, done)


def set_image_metadata(world: World, volume: Volume, metadata: Any) -> None:
    if volume.status not in ("available", "in-use", "reserved"):
        raise ApiError(400, f"Invalid volume: Volume {volume.id} status must be available or "
                            f"in-use, but current status is: {volume.status}.")
    if not isinstance(metadata, dict):
        raise ApiError(400, "Malformed request body")
    volume.image_metadata.update({str(k): str(v) for k, v in metadata.items()})
    volume.updated_at = world.stamp()


def upload_to_image(
    world: World,
    volume: Volume,
    *,
    image_name: str,
    disk_format: str = "raw",
    container_format: str = "bare",
    visibility: str = "private",
    protected: bool = False,
) -> Image:
    # An in-use volume too, even with force: enable_force_upload defaults to False and then
    # Cinder ignores force (cinder/volume/api.py: API.copy_volume_to_image).
    if volume.status != "available":
        raise ApiError(400, f"Invalid volume: Volume {volume.id} status must be available")
    if disk_format not in DISK_FORMATS:
        raise ApiError(400, f"Invalid input received: Invalid disk-format '{disk_format}' is "
                            "specified. Allowed disk-formats are " + ", ".join(DISK_FORMATS))
    check_image_quota(world, new_images=1, new_bytes=len(volume.data))
    # Cinder sends Glance the name, formats, visibility and the volume's image metadata
    # less the core and reserved keys; min_disk stays Glance's default, 0.
    properties = {k: v for k, v in volume.image_metadata.items()
                  if k not in _GLANCE_CORE and not k.startswith(_GLANCE_RESERVED)}
    image = new_image(world, image_name, disk_format=disk_format,
                      container_format=container_format, visibility=visibility,
                      protected=protected, properties=properties)
    previous = volume.status
    volume.status = "uploading"
    volume.updated_at = world.stamp()
    stuck = world.faults.take("upload_stuck", volume.name) is not None
    killed = world.faults.take("image_killed", image_name) is not None

    def saving() -> None:
        if image.id in world.images and image.status == "queued":
            image.status = "saving"
            image.updated_at = world.stamp()

    def uploaded() -> None:
        if stuck:
            return  # the volume stays `uploading`: only an admin reset gets it out
        if image.id in world.images and image.status == "saving":
            image.updated_at = world.stamp()
            if killed:
                _upload_failed(world, volume, image)
            else:
                image.data = volume.data
                image.status = "active"
                finalize_image_data(image, disk_gib=volume.size)
        world.schedule(UPLOAD_STATUS_LAG_SECONDS, volume_back)

    def volume_back() -> None:
        if volume.id in world.volumes and volume.status == "uploading":
            volume.status = previous
            volume.updated_at = world.stamp()

    world.schedule(UPLOAD_START_SECONDS, saving)
    world.schedule(UPLOAD_START_SECONDS + UPLOAD_SECONDS_PER_GB * volume.size / world.work_pace,
                   uploaded)
    return image


def _upload_failed(world: World, volume: Volume, image: Image) -> None:
    """Glance puts an image whose upload failed back to queued (glance/api/v2/image_data.py
    ImageDataController._restore); Cinder then deletes a queued or saving image and leaves a
    user message (cinder/volume/manager.py copy_volume_to_image, _delete_image)."""
    image.status = "deleted"
    world.images.pop(image.id, None)
    add_user_message(world, volume.id, "VOLUME_VOLUME_003_004",
                     "copy volume to image: Failed to upload volume to image at backend.")


def snapshot_volume(world: World, volume: Volume, name: str) -> Snapshot:
    limit = world.faults.quota("volume", "snapshots")
    if limit >= 0 and len(world.snapshots) + 1 > limit:
        raise ApiError(413, f"SnapshotLimitExceeded: Maximum number of snapshots allowed "
                            f"({limit}) exceeded", headers=dict(QUOTA_HEADERS))
    snap = Snapshot(id=new_id(), volume_id=volume.id, name=name, size=volume.size,
                    status="creating", created_at=world.stamp())
    world.snapshots[snap.id] = snap

    def ready() -> None:
        if snap.id in world.snapshots:
            snap.status = "available"

    world.schedule(3.0, ready)
    return snap
