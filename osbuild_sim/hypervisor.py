"""Nova's block device mapping rules and the machine libvirt would build, for the sim.

Two moments, as in Nova: :func:`check_mappings` is what nova-api rejects with a 400 before
anything exists (messages are Nova's own text), and :func:`build_machine` is what
nova-compute's libvirt driver decides at spawn (machine type, firmware, buses), failing the
server into ERROR with the fault message libvirt/Nova would give.

Sources: nova/block_device.py (``BlockDeviceDict.from_api``), nova/compute/api.py
(``_validate_bdm``), nova/exception.py, nova/virt/libvirt/blockinfo.py and host.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# nova.objects.fields.DiskBus.ALL: the values nova-api accepts for disk_bus.
DISK_BUSES = ("fdc", "ide", "sata", "scsi", "usb", "virtio", "xen", "lxc", "uml")
# What the libvirt driver can use with virt_type kvm (blockinfo.is_disk_bus_valid_for_virt).
KVM_BUSES = ("virtio", "scsi", "ide", "usb", "fdc", "sata")
IDE_MAX_DEVICES = 4
SOURCE_TYPES = ("volume", "image", "snapshot", "blank")
DESTINATION_TYPES = ("local", "volume")
TPM_VERSIONS = ("1.2", "2.0")
TPM_MODELS = ("tpm-tis", "tpm-crb")

_INVALID_BDM = "Block Device Mapping is Invalid."
_BOOT_SEQUENCE = (
    "Block Device Mapping is Invalid: Boot sequence for the instance and image/block "
    "device mapping combination is not valid."
)


class MappingError(Exception):
    """A mapping nova-api refuses; the API answers ``status`` with this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SpawnError(Exception):
    """What nova-compute fails the spawn with; the server goes to ERROR with this fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AttachedDevice:
    kind: Literal["disk", "cdrom"]
    bus: str | None  # as given in the mapping (None = choose like Nova does)
    boot_index: int | None  # None or negative = not bootable
    source: Literal["volume", "image", "blank"]
    resource_id: str | None  # volume id (volume) or image id (image->local root disk)
    data: bytes  # current contents (ISO bytes, disk record, b"" for blank)
    image_meta: dict[str, str]  # volume_image_metadata of a volume / properties of an image

    @property
    def bootable(self) -> bool:
        return self.boot_index is not None and self.boot_index >= 0


@dataclass(frozen=True)
class Machine:
    machine_type: Literal["pc", "q35"]
    firmware: Literal["bios", "uefi"]
    secure_boot: bool
    tpm: bool
    os_type: str | None
    devices: tuple[AttachedDevice, ...]  # every device, buses resolved, in mapping order

    def boot_order(self) -> tuple[AttachedDevice, ...]:
        """What the firmware tries: the first disk and the first cdrom by boot_index, the
        classes ordered by their lowest boot_index (libvirt ``<boot dev=.../>``)."""
        firsts: dict[str, AttachedDevice] = {}
        for device in sorted(
            (d for d in self.devices if d.bootable), key=lambda d: d.boot_index or 0
        ):
            firsts.setdefault(device.kind, device)
        return tuple(sorted(firsts.values(), key=lambda d: d.boot_index or 0))

    def cdroms(self) -> tuple[AttachedDevice, ...]:
        return tuple(d for d in self.devices if d.kind == "cdrom")

    def disks(self) -> tuple[AttachedDevice, ...]:
        return tuple(d for d in self.devices if d.kind == "disk")


# --------------------------------------------------------------------------- API time


def _boot_index(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise MappingError(
            "Invalid input for field/attribute boot_index. Value: "
            f"{value}. {value} is not of type 'integer', 'string'"
        )
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MappingError(
            f"Invalid input for field/attribute boot_index. Value: {value}. "
            f"'{value}' does not match '^-?[0-9]+$'"
        ) from None


def check_mappings(bdms: list[dict[str, Any]], image_ref: str | None) -> None:
    """Nova API-time rules on block_device_mapping_v2 (raises :class:`MappingError`).

    Nova does not add an image mapping of its own when ``imageRef`` comes with
    block_device_mapping_v2 (novaclient inserts one, bug 1433609): the caller must map the
    image to local at boot_index 0 itself.
    """
    boot_indexes: list[int] = []
    for bdm in bdms:
        source = bdm.get("source_type")
        destination = bdm.get("destination_type")
        if source not in SOURCE_TYPES:
            raise MappingError(
                f"Invalid input for field/attribute source_type. Value: {source}. "
                f"{source!r} is not one of {list(SOURCE_TYPES)!r}"
            )
        if destination is not None and destination not in DESTINATION_TYPES:
            raise MappingError(
                f"Invalid input for field/attribute destination_type. Value: {destination}. "
                f"{destination!r} is not one of {list(DESTINATION_TYPES)!r}"
            )
        index = _boot_index(bdm.get("boot_index"))
        uuid = bdm.get("uuid")
        # block_device.BlockDeviceDict.from_api
        if source == "blank" and uuid:
            raise MappingError("Block Device Mapping is Invalid: Invalid device UUID.")
        if source != "blank" and not uuid:
            raise MappingError("Block Device Mapping is Invalid: Missing device UUID.")
        if source == "image" and destination == "local":
            effective = -1 if index is None else index
            if not (image_ref and effective == 0):
                raise MappingError(
                    "Block Device Mapping is Invalid: Mapping image to local is not supported."
                )
        if destination == "local" and bdm.get("volume_type"):
            raise MappingError(
                "Block Device Mapping is Invalid: Specifying a volume_type with "
                "destination_type=local is not supported."
            )
        size = bdm.get("volume_size")
        if size is not None:
            try:
                size = int(size)
            except (TypeError, ValueError):
                raise MappingError(
                    f"Invalid input for field/attribute volume_size. Value: {size}."
                ) from None
            if size < 0:
                raise MappingError(
                    f"Invalid input for field/attribute volume_size. Value: {size}. "
                    f"{size} is less than the minimum of 0"
                )
        if index is not None and index >= 0:
            boot_indexes.append(index)

    # compute.api.API._validate_bdm: unique, contiguous from 0, at least one.
    boot_indexes.sort()
    if not boot_indexes or any(i != v for i, v in enumerate(boot_indexes)):
        raise MappingError(_BOOT_SEQUENCE)

    for bdm in bdms:
        source, destination = bdm.get("source_type"), bdm.get("destination_type")
        size = int(bdm.get("volume_size") or 0)
        if source == "image" and destination == "volume" and not size:
            raise MappingError(
                "Images with destination_type 'volume' need to have a non-zero size specified"
            )
        if source == "blank" and destination == "volume" and not size:
            raise MappingError(
                "Blank volumes (source: 'blank', dest: 'volume') need to have non-zero size"
            )
        bus = bdm.get("disk_bus")
        if bus and bus not in DISK_BUSES:
            # InvalidBDMDiskBus spells its template attribute ``msg_fmr``, so Nova answers
            # with the parent class' generic text.
            raise MappingError(_INVALID_BDM)


# --------------------------------------------------------------------------- spawn time


def boot_properties(
    devices: list[AttachedDevice] | tuple[AttachedDevice, ...],
    image_ref_properties: Mapping[str, str] | None,
) -> dict[str, str]:
    """The image properties Nova builds the machine from: imageRef's when the server has
    one, else the boot_index 0 device's (a blank volume gives nothing)."""
    if image_ref_properties is not None:
        return dict(image_ref_properties)
    root = next((d for d in devices if d.boot_index == 0), None)
    return dict(root.image_meta) if root is not None else {}


def _machine_type(props: Mapping[str, str]) -> Literal["pc", "q35"]:
    value = (props.get("hw_machine_type") or "pc").strip()
    # QEMU versions machine types (pc-q35-8.2, pc-i440fx-8.2); Nova matches "q35" anywhere.
    if "q35" in value:
        return "q35"
    if value == "pc" or value.startswith(("pc-i440fx", "pc-")):
        return "pc"
    raise SpawnError(f"Invalid machine type: {value}")


def _unsupported(model: str) -> SpawnError:
    return SpawnError(f"Requested hardware '{model}' is not supported by the 'kvm' virt driver")


def _resolve_bus(device: AttachedDevice, props: Mapping[str, str], machine_type: str) -> str:
    # blockinfo.get_info_from_bdm: a mapping's bus that kvm cannot use is ignored, and the
    # image property, then the driver default, decides.
    if device.bus and device.bus in KVM_BUSES:
        return device.bus
    image_bus = props.get(f"hw_{device.kind}_bus")
    if image_bus:
        if image_bus not in KVM_BUSES:
            raise _unsupported(image_bus)
        return image_bus
    if device.kind == "disk":
        return "virtio"
    return "sata" if machine_type == "q35" else "ide"


def build_machine(devices: list[AttachedDevice], hw_props: dict[str, str]) -> Machine:
    """The machine nova-compute defines for these devices and image properties.

    ``hw_props`` are the properties :func:`boot_properties` picks. Raises
    :class:`SpawnError` with the message the server's fault would carry.
    """
    machine_type = _machine_type(hw_props)
    firmware_prop = (hw_props.get("hw_firmware_type") or "bios").lower()
    if firmware_prop not in ("bios", "uefi"):
        raise SpawnError(
            f"Invalid image metadata. Error: Field value {firmware_prop} is invalid"
        )
    firmware: Literal["bios", "uefi"] = "uefi" if firmware_prop == "uefi" else "bios"

    secure_prop = (hw_props.get("os_secure_boot") or "disabled").lower()
    if secure_prop not in ("required", "disabled", "optional"):
        raise SpawnError(f"Invalid image metadata. Error: Field value {secure_prop} is invalid")
    secure_boot = False
    if secure_prop == "required":
        if firmware != "uefi":
            raise SpawnError("Secure Boot is not supported by host")
        if machine_type != "q35":
            # host.get_loader finds no secure-boot firmware for i440fx machine types.
            raise SpawnError("UEFI is not supported")
        secure_boot = True
    elif secure_prop == "optional":
        secure_boot = firmware == "uefi" and machine_type == "q35"

    tpm_version = hw_props.get("hw_tpm_version")
    tpm_model = hw_props.get("hw_tpm_model")
    if tpm_model and not tpm_version:
        raise SpawnError("vTPM model was requested without a vTPM version")
    if tpm_version:
        model = tpm_model or "tpm-tis"
        if tpm_version not in TPM_VERSIONS or model not in TPM_MODELS:
            raise SpawnError(f"Invalid vTPM version/model: {tpm_version}/{model}")
        if tpm_version == "1.2" and model == "tpm-crb":
            raise SpawnError("TPM model tpm-crb is only supported with TPM version 2.0")

    resolved = []
    for device in devices:
        bus = _resolve_bus(device, hw_props, machine_type)
        resolved.append(
            AttachedDevice(
                kind=device.kind, bus=bus, boot_index=device.boot_index,
                source=device.source, resource_id=device.resource_id, data=device.data,
                image_meta=dict(device.image_meta),
            )
        )
    ide = [d for d in resolved if d.bus == "ide"]
    if ide and machine_type == "q35":
        raise SpawnError(
            "unsupported configuration: IDE controllers are unsupported for this QEMU "
            "binary or machine type"
        )
    if len(ide) > IDE_MAX_DEVICES:
        # blockinfo.find_disk_dev_for_disk_bus runs out of hda..hdd.
        raise SpawnError("No free disk device names for prefix 'hd'")

    return Machine(
        machine_type=machine_type,
        firmware=firmware,
        secure_boot=secure_boot,
        tpm=bool(tpm_version),
        os_type=hw_props.get("os_type"),
        devices=tuple(resolved),
    )


def boot_disk_index(machine: Machine) -> int | None:
    """Index in ``machine.devices`` of the disk the guest installs to and boots from: the
    first disk in boot order, else the first disk."""
    candidates = [d for d in machine.boot_order() if d.kind == "disk"]
    candidates += [d for d in machine.devices if d.kind == "disk"]
    for wanted in candidates:
        for index, device in enumerate(machine.devices):
            if device is wanted:
                return index
    return None
