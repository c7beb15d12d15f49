"""Nova's mapping rules at API time and the machine libvirt builds at spawn."""

from __future__ import annotations

from typing import Any

import pytest

from osbuild_sim.hypervisor import (
    AttachedDevice,
    MappingError,
    SpawnError,
    boot_properties,
    build_machine,
    check_mappings,
)

BOOT_SEQUENCE = (
    "Block Device Mapping is Invalid: Boot sequence for the instance and image/block "
    "device mapping combination is not valid."
)


def volume(index: int | None, device_type: str = "cdrom", **extra: Any) -> dict[str, Any]:
    return {"source_type": "volume", "destination_type": "volume", "uuid": f"vol-{index}",
            "boot_index": index, "device_type": device_type, **extra}


def builder_mappings() -> list[dict[str, Any]]:
    """What osbuild maps for a volume target: target disk at 0, installer cdrom at 1."""
    return [volume(0, "disk", disk_bus="virtio"), volume(1), volume(None), volume(-1)]


def test_the_builder_mapping_is_accepted() -> None:
    check_mappings(builder_mappings(), None)


@pytest.mark.parametrize(
    "indexes",
    [[0, 0], [0, 2], [1, 2], [None, -1], ["1"]],
    ids=["duplicate", "gap", "no-zero", "none-bootable", "string-without-zero"],
)
def test_boot_indexes_unique_and_contiguous_from_zero(indexes: list[Any]) -> None:
    with pytest.raises(MappingError) as caught:
        check_mappings([volume(i) for i in indexes], None)
    assert caught.value.message == BOOT_SEQUENCE
    assert caught.value.status == 400


def test_boot_index_as_string_counts() -> None:
    check_mappings([volume("0", "disk"), volume("1")], None)


def test_image_to_local_only_at_zero_with_image_ref() -> None:
    image_local = {"source_type": "image", "destination_type": "local", "uuid": "img"}
    message = "Block Device Mapping is Invalid: Mapping image to local is not supported."
    with pytest.raises(MappingError, match="^" + message.replace(".", r"\.") + "$"):
        check_mappings([{**image_local, "boot_index": 0}], None)
    with pytest.raises(MappingError) as caught:
        check_mappings([volume(0, "disk"), {**image_local, "boot_index": 1}], "img")
    assert caught.value.message == message
    # Nova adds no image mapping of its own: the caller maps the image at 0.
    check_mappings([{**image_local, "boot_index": 0}, volume(1)], "img")
    with pytest.raises(MappingError, match="Boot sequence"):
        check_mappings([volume(1)], "img")


def test_sizes_for_created_volumes() -> None:
    blank = {"source_type": "blank", "destination_type": "volume", "boot_index": 0}
    with pytest.raises(MappingError) as caught:
        check_mappings([blank], None)
    assert caught.value.message == (
        "Blank volumes (source: 'blank', dest: 'volume') need to have non-zero size"
    )
    check_mappings([{**blank, "volume_size": 40}], None)
    image_volume = {"source_type": "image", "destination_type": "volume", "uuid": "img",
                    "boot_index": 0}
    with pytest.raises(MappingError) as caught:
        check_mappings([image_volume], None)
    assert caught.value.message == (
        "Images with destination_type 'volume' need to have a non-zero size specified"
    )
    check_mappings([{**image_volume, "volume_size": 6}], None)


def test_uuid_rules() -> None:
    with pytest.raises(MappingError) as caught:
        check_mappings([{"source_type": "blank", "destination_type": "volume", "uuid": "x",
                         "boot_index": 0, "volume_size": 1}], None)
    assert caught.value.message == "Block Device Mapping is Invalid: Invalid device UUID."
    with pytest.raises(MappingError) as caught:
        check_mappings([{"source_type": "volume", "boot_index": 0}], None)
    assert caught.value.message == "Block Device Mapping is Invalid: Missing device UUID."


def test_disk_bus_must_be_known_to_nova() -> None:
    for bus in ("fdc", "ide", "sata", "scsi", "usb", "virtio", "xen", "lxc", "uml"):
        check_mappings([volume(0, "disk", disk_bus=bus)], None)
    with pytest.raises(MappingError) as caught:
        check_mappings([volume(0, "disk", disk_bus="nvme")], None)
    # InvalidBDMDiskBus has a typo'd template attribute, so Nova answers the generic text.
    assert caught.value.message == "Block Device Mapping is Invalid."


def test_source_type_enum() -> None:
    with pytest.raises(MappingError, match="source_type"):
        check_mappings([{"source_type": "file", "uuid": "x", "boot_index": 0}], None)


# --------------------------------------------------------------------------- spawn


def device(kind: str, boot_index: int | None, bus: str | None = None,
           meta: dict[str, str] | None = None, source: str = "volume") -> AttachedDevice:
    return AttachedDevice(kind=kind, bus=bus, boot_index=boot_index, source=source,  # type: ignore[arg-type]
                          resource_id=f"{kind}-{boot_index}", data=b"", image_meta=meta or {})


def test_blank_volume_gives_a_pc_bios_machine_with_ide_cdroms() -> None:
    devices = [device("disk", 0, source="blank"), device("cdrom", 1), device("cdrom", None)]
    machine = build_machine(devices, boot_properties(devices, None))
    assert (machine.machine_type, machine.firmware, machine.secure_boot, machine.tpm) == (
        "pc", "bios", False, False)
    assert [d.bus for d in machine.devices] == ["virtio", "ide", "ide"]
    assert machine.os_type is None


def test_properties_come_from_image_ref_else_the_boot_disk() -> None:
    root_meta = {"hw_machine_type": "q35", "hw_firmware_type": "uefi", "os_type": "windows"}
    devices = [device("disk", 0, meta=root_meta), device("cdrom", 1, meta={"os_type": "x"})]
    assert boot_properties(devices, None) == root_meta
    assert boot_properties(devices, {"hw_machine_type": "pc"}) == {"hw_machine_type": "pc"}
    machine = build_machine(devices, boot_properties(devices, None))
    assert (machine.machine_type, machine.firmware, machine.os_type) == ("q35", "uefi", "windows")
    assert [d.bus for d in machine.devices] == ["virtio", "sata"]  # q35 has no IDE


def test_bus_precedence() -> None:
    props = {"hw_cdrom_bus": "scsi", "hw_disk_bus": "sata"}
    devices = [device("disk", 0), device("cdrom", 1, bus="sata"), device("cdrom", 2),
               device("cdrom", None, bus="xen")]
    machine = build_machine(devices, props)
    # The mapping's bus wins, then the image property; a bus kvm cannot use is ignored.
    assert [d.bus for d in machine.devices] == ["sata", "sata", "scsi", "scsi"]
    with pytest.raises(SpawnError, match="Requested hardware 'xen' is not supported"):
        build_machine([device("disk", 0)], {"hw_disk_bus": "xen"})


def test_ide_holds_four_devices() -> None:
    four = [device("disk", 0, bus="ide")] + [device("cdrom", i) for i in (1, 2, 3)]
    build_machine(four, {})
    with pytest.raises(SpawnError) as caught:
        build_machine([*four, device("cdrom", None)], {})
    assert caught.value.message == "No free disk device names for prefix 'hd'"


def test_q35_has_no_ide() -> None:
    with pytest.raises(SpawnError, match="IDE controllers are unsupported"):
        build_machine([device("disk", 0), device("cdrom", 1, bus="ide")],
                      {"hw_machine_type": "pc-q35-8.2"})


def test_secure_boot_needs_uefi_and_q35() -> None:
    with pytest.raises(SpawnError, match="Secure Boot is not supported by host"):
        build_machine([device("disk", 0)], {"os_secure_boot": "required"})
    with pytest.raises(SpawnError, match="UEFI is not supported"):
        build_machine([device("disk", 0)],
                      {"os_secure_boot": "required", "hw_firmware_type": "uefi"})
    machine = build_machine([device("disk", 0)], {"os_secure_boot": "required",
                                                  "hw_firmware_type": "uefi",
                                                  "hw_machine_type": "q35"})
    assert machine.secure_boot and machine.firmware == "uefi"


def test_tpm_properties() -> None:
    assert build_machine([device("disk", 0)], {"hw_tpm_version": "2.0"}).tpm
    assert build_machine([device("disk", 0)],
                         {"hw_tpm_version": "2.0", "hw_tpm_model": "tpm-crb"}).tpm
    with pytest.raises(SpawnError):
        build_machine([device("disk", 0)], {"hw_tpm_version": "1.2", "hw_tpm_model": "tpm-crb"})
    with pytest.raises(SpawnError):
        build_machine([device("disk", 0)], {"hw_tpm_model": "tpm-tis"})


def test_unknown_machine_type() -> None:
    with pytest.raises(SpawnError, match="Invalid machine type: virt"):
        build_machine([device("disk", 0)], {"hw_machine_type": "virt"})


def test_boot_order_tries_the_first_device_of_each_class() -> None:
    devices = [device("cdrom", 2), device("disk", 0), device("cdrom", 1), device("disk", 3),
               device("cdrom", None), device("cdrom", -1)]
    machine = build_machine(devices, {})
    assert [(d.kind, d.boot_index) for d in machine.boot_order()] == [("disk", 0), ("cdrom", 1)]
    cdrom_first = build_machine([device("disk", 1), device("cdrom", 0)], {})
    assert [d.kind for d in cdrom_first.boot_order()] == ["cdrom", "disk"]
