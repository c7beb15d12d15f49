"""Facts about Windows media and the VirtIO driver ISO that the spec, templates and sim share."""

from __future__ import annotations

from dataclasses import dataclass

SERVER_VERSIONS = ("2016", "2019", "2022", "2025")
CLIENT_VERSIONS = ("10", "11")
VERSIONS = SERVER_VERSIONS + CLIENT_VERSIONS

SERVER_EDITIONS = (
    "SERVERSTANDARDCORE",
    "SERVERSTANDARD",
    "SERVERDATACENTERCORE",
    "SERVERDATACENTER",
)
CLIENT_EDITIONS = ("Pro", "Enterprise", "Education", "Pro for Workstations", "IoT Enterprise")

# Build numbers of each release's GA media (the VirtIO OS folder follows the build).
BUILD_NUMBERS = {
    "2016": 14393,
    "2019": 17763,
    "2022": 20348,
    "2025": 26100,
    "10": 19045,
    "11": 26100,
}

# Public KMS client setup keys (GVLK), from Microsoft's published list.
GVLK = {
    ("2016", "STANDARD"): "WC2BQ-8NRM3-FDDYY-2BFGV-KHKQY",
    ("2016", "DATACENTER"): "CB7KF-BWN84-R7R2Y-793K2-8XDDG",
    ("2019", "STANDARD"): "N69G4-B89J2-4G8F4-WWYCC-J464C",
    ("2019", "DATACENTER"): "WMDGN-G9PQG-XVVXX-R3X43-63DFG",
    ("2022", "STANDARD"): "VDYBN-27WPP-V4HQT-9VMD4-VMK7H",
    ("2022", "DATACENTER"): "WX4NM-KYWYW-QJJR4-XV3QB-6VM33",
    ("2025", "STANDARD"): "TVRH6-WHNXV-R9WG3-9XRFY-MY832",
    ("2025", "DATACENTER"): "D764K-2NDRG-47T6Q-P8T8W-YP6DF",
    ("client", "Pro"): "W269N-WFGWX-YVC9B-4J6C9-T83GX",
    ("client", "Enterprise"): "NPPR9-FWDCX-D2C8J-H872K-2YT43",
}

# virtio-win: `<Driver>\<os folder>\amd64`.
VIRTIO_DRIVERS = (
    "viostor",
    "vioscsi",
    "NetKVM",
    "Balloon",
    "vioserial",
    "viorng",
    "pvpanic",
    "fwcfg",
    "vioinput",
    "viofs",
    "qxldod",
)
VIRTIO_OS_FOLDERS = ("2k16", "2k19", "2k22", "2k25", "w10", "w11")
# qxldod is only packaged for the older releases.
VIRTIO_DRIVER_FOLDERS = {
    driver: (("2k16", "2k19", "w10") if driver == "qxldod" else VIRTIO_OS_FOLDERS)
    for driver in VIRTIO_DRIVERS
}
VIRTIO_GUEST_TOOLS = "virtio-win-guest-tools.exe"
VIRTIO_GT_MSI = "virtio-win-gt-x64.msi"
VIRTIO_QEMU_GA_MSI = "guest-agent/qemu-ga-x86_64.msi"
# Which storage driver Setup needs to see the target disk on each bus.
STORAGE_DRIVER_FOR_BUS = {"virtio": "viostor", "scsi": "vioscsi", "sata": None}
# Drive letters the VirtIO ISO may get in WinPE (unknown in advance).
WINPE_DRIVE_LETTERS = ("D", "E", "F", "G", "H", "I")


def is_server(version: str) -> bool:
    return version in SERVER_VERSIONS


def virtio_os_folder(version: str, build: int | None = None) -> str:
    """The virtio-win OS folder for a Windows version (by build number for servers)."""
    if version == "10":
        return "w10"
    if version == "11":
        return "w11"
    build = build if build is not None else BUILD_NUMBERS[version]
    if build >= 26100:
        return "2k25"
    if build >= 20348:
        return "2k22"
    if build >= 17763:
        return "2k19"
    return "2k16"


@dataclass(frozen=True)
class Edition:
    version: str
    edition: str

    @property
    def image_name(self) -> str:
        """The exact `/IMAGE/NAME` of this edition in install.wim."""
        if is_server(self.version):
            return f"Windows Server {self.version} {self.edition}"
        return f"Windows {self.version} {self.edition}"

    @property
    def gvlk(self) -> str | None:
        if is_server(self.version):
            family = "DATACENTER" if "DATACENTER" in self.edition else "STANDARD"
            return GVLK.get((self.version, family))
        return GVLK.get(("client", self.edition))


def canonical_edition(version: str, edition: str) -> str | None:
    """The canonical spelling of ``edition`` for ``version`` (case-insensitive), or None."""
    choices = SERVER_EDITIONS if is_server(version) else CLIENT_EDITIONS
    wanted = edition.replace("_", " ").casefold()
    for choice in choices:
        if choice.casefold() == wanted:
            return choice
    return None
