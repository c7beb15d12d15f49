"""What a virtio-win ISO holds: driver folders per Windows release, guest tools, guest agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from osbuild.media import eltorito, windows


@dataclass(frozen=True)
class VirtioContents:
    # driver -> the OS folders (`2k22`, `w11`...) that hold an amd64 build of it
    drivers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    guest_tools: bool = False  # virtio-win-guest-tools.exe
    qemu_ga: bool = False  # guest-agent/qemu-ga-x86_64.msi

    def missing_for(self, os_folder: str, drivers: tuple[str, ...]) -> list[str]:
        """The drivers with no build for that Windows release."""
        return [d for d in drivers if os_folder not in self.drivers.get(d, ())]


def read_virtio_iso(fp: IO[bytes], *, name: str = "ISO") -> VirtioContents | None:
    """The layout of a virtio-win ISO (`<Driver>/<os>/amd64/*.inf`); None when it has none."""
    iso = eltorito.open_iso(fp, name=name)
    try:
        files = eltorito.list_files(iso)
    finally:
        iso.close()
    # Folder names are compared case-blind: the ISO's namespaces disagree on case.
    known = {d.lower(): d for d in windows.VIRTIO_DRIVERS}
    drivers: dict[str, set[str]] = {}
    for path in files:
        parts = path.split("/")
        if len(parts) == 4 and parts[2] == "amd64" and parts[3].endswith(".inf"):
            driver = known.get(parts[0], parts[0])
            drivers.setdefault(driver, set()).add(parts[1])
    if not drivers:
        return None
    order = {folder: i for i, folder in enumerate(windows.VIRTIO_OS_FOLDERS)}
    return VirtioContents(
        drivers={d: tuple(sorted(f, key=lambda x: (order.get(x, len(order)), x)))
                 for d, f in sorted(drivers.items(), key=lambda kv: kv[0].lower())},
        guest_tools=windows.VIRTIO_GUEST_TOOLS.lower() in files,
        qemu_ga=windows.VIRTIO_QEMU_GA_MSI.lower() in files,
    )
