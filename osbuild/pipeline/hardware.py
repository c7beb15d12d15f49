"""The image properties that make Nova build the right machine for a spec's Windows."""

from __future__ import annotations

from osbuild.pipeline.context import BuildContext


def hardware_properties(ctx: BuildContext) -> dict[str, str]:
    """Image properties that make Nova build the right machine for this Windows."""
    spec = ctx.spec
    props = {
        "os_type": "windows",
        "os_distro": "windows",
        "os_version": spec.windows.version,
        "hw_machine_type": "q35",
        "hw_firmware_type": spec.windows.firmware,
        "hw_cdrom_bus": "sata",
        "hw_disk_bus": spec.builder.disk_bus,
        "hw_vif_model": "virtio",
    }
    if spec.builder.disk_bus == "scsi":
        props["hw_scsi_model"] = "virtio-scsi"
    if spec.windows.secure_boot:
        props["os_secure_boot"] = "required"
    if spec.windows.tpm:
        props["hw_tpm_version"] = "2.0"
        props["hw_tpm_model"] = "tpm-crb"
    if spec.virtio.qemu_ga:
        props["hw_qemu_guest_agent"] = "yes"
    return props
