"""What the simulated Windows guest has written to its disk and freed again, in bytes.

A captured image holds every block that does not read as zero: live files, and the bytes of
deleted files until something overwrites them. qcow2 conversion (Cinder's upload-to-image,
Nova's snapshot) skips only zero blocks, so what the image hygiene steps remove and whether
free space is zeroed decide the image's size. Sizes are those of a fresh Windows install on a
40 GB disk, rounded: what matters is which step saves what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MIB = 1 << 20
GIB = 1 << 30

INSTALLED = {"server": 9 * GIB, "client": 11 * GIB}
PAGEFILE = 1536 * MIB  # Windows sizes it from RAM at first boot
HIBERFILE = {"server": 0, "client": 1638 * MIB}  # servers have hibernation off
DRIVERS_AND_AGENTS = 300 * MIB  # virtio guest tools, qemu-ga, cloudbase-init
SUPERSEDED_AT_INSTALL = 400 * MIB  # GA media already carry some superseded components
UPDATE_PASS = {  # per Windows Update pass: first, then each later one
    "download": (1100 * MIB, 300 * MIB),  # SoftwareDistribution\Download
    "installed": (1300 * MIB, 250 * MIB),
    "superseded": (900 * MIB, 200 * MIB),  # WinSxS keeps the replaced versions
    "scratch": (700 * MIB, 150 * MIB),  # temp files, deleted by the installer
}
RESET_BASE_EXTRA = 350 * MIB  # /ResetBase also drops what cleanup keeps for uninstall


@dataclass
class DiskUsage:
    files: dict[str, int] = field(default_factory=dict)  # what -> bytes in live files
    freed: int = 0  # bytes of deleted files, not yet overwritten

    def write(self, what: str, size: int) -> None:
        self.files[what] = self.files.get(what, 0) + size

    def delete(self, what: str, size: int | None = None) -> int:
        """Delete ``size`` bytes (all, by default) of ``what``; returns the bytes freed."""
        have = self.files.get(what, 0)
        gone = have if size is None else min(size, have)
        self.files[what] = have - gone
        self.freed += gone
        return gone

    def zero_free_space(self) -> None:
        self.freed = 0

    @property
    def nonzero(self) -> int:
        return sum(self.files.values()) + self.freed

    def to_record(self) -> dict[str, Any]:
        return {"files": dict(sorted(self.files.items())), "freed": self.freed,
                "nonzero": self.nonzero}

    @classmethod
    def from_record(cls, data: Any) -> DiskUsage:
        if not isinstance(data, dict):
            return cls()
        return cls(files=dict(data.get("files") or {}), freed=int(data.get("freed") or 0))


def captured_size(record: dict[str, Any] | None, disk_format: str, virtual_size: int) -> int:
    """The bytes Glance stores for a capture of this disk: qcow2 holds the non-zero blocks
    (its own metadata aside), raw the whole disk."""
    if disk_format != "qcow2" or not record or "disk" not in record:
        return virtual_size
    return min(virtual_size, DiskUsage.from_record(record["disk"]).nonzero)
