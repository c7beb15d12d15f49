"""Facts about Windows media and the VirtIO driver ISO that the spec, templates and sim share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    """One Windows release: everything the spec, the templates, preflight and the simulated
    cloud know about it comes from here."""

    version: str  # as a spec writes it
    server: bool
    build: int  # the GA media's build number (the VirtIO OS folder follows it)
    # Setup's minimum memory (Microsoft's system requirements), checked against the flavor.
    min_ram_mb: int = 2048
    # Windows 11 Setup checks TPM 2.0, Secure Boot and UEFI ("This PC can't run Windows 11")
    # unless told not to; it cannot install on BIOS at all.
    hardware_checks: bool = False
    # The volume label of Microsoft's media (the ISO the simulator makes carries it too).
    media_label: str = "SSS_X64FREE_EN-US_DV9"
    # The first build of the release (Windows 10 ran from 10240 to 19045, Windows 11 from
    # 22000): install media of a build from here on are this release. Default: `build`.
    first_build: int | None = None

    @property
    def builds_from(self) -> int:
        return self.first_build if self.first_build is not None else self.build


RELEASES = (
    Release("2016", server=True, build=14393),
    Release("2019", server=True, build=17763),
    Release("2022", server=True, build=20348),
    Release("2025", server=True, build=26100),
    Release("10", server=False, build=19045, media_label="CCCOMA_X64FRE_EN-US_DV9",
            first_build=10240),
    Release("11", server=False, build=26100, min_ram_mb=4096, hardware_checks=True,
            media_label="CCCOMA_X64FRE_EN-US_DV9", first_build=22000),
)
RELEASE = {r.version: r for r in RELEASES}
SERVER_VERSIONS = tuple(r.version for r in RELEASES if r.server)
CLIENT_VERSIONS = tuple(r.version for r in RELEASES if not r.server)
VERSIONS = SERVER_VERSIONS + CLIENT_VERSIONS
BUILD_NUMBERS = {r.version: r.build for r in RELEASES}

SERVER_EDITIONS = (
    "SERVERSTANDARDCORE",
    "SERVERSTANDARD",
    "SERVERDATACENTERCORE",
    "SERVERDATACENTER",
)
CLIENT_EDITIONS = (
    "Pro",
    "Enterprise",
    "Education",
    "Pro for Workstations",
    "IoT Enterprise",
    # The rest of Microsoft's KMS table: N (no media apps), G (government), Pro Education
    # and the LTSC releases (Windows 10 LTSC 2019/2021, Windows 11 LTSC 2024).
    "Pro N",
    "Pro for Workstations N",
    "Pro Education",
    "Pro Education N",
    "Education N",
    "Enterprise N",
    "Enterprise G",
    "Enterprise G N",
    "Enterprise LTSC",
    "Enterprise N LTSC",
    "IoT Enterprise LTSC",
)

# Public KMS client setup keys (GVLK): Microsoft's table "KMS client activation and product
# keys" (learn.microsoft.com/windows-server/get-started/kms-client-activation-keys), every
# edition of the catalog above that has one. Server Core shares its edition's key; Windows
# 10 and 11 share theirs. Microsoft publishes none for the non-LTSC IoT Enterprise.
SERVER_GVLK = {
    ("2016", "STANDARD"): "WC2BQ-8NRM3-FDDYY-2BFGV-KHKQY",
    ("2016", "DATACENTER"): "CB7KF-BWN84-R7R2Y-793K2-8XDDG",
    ("2019", "STANDARD"): "N69G4-B89J2-4G8F4-WWYCC-J464C",
    ("2019", "DATACENTER"): "WMDGN-G9PQG-XVVXX-R3X43-63DFG",
    ("2022", "STANDARD"): "VDYBN-27WPP-V4HQT-9VMD4-VMK7H",
    ("2022", "DATACENTER"): "WX4NM-KYWYW-QJJR4-XV3QB-6VM33",
    ("2025", "STANDARD"): "TVRH6-WHNXV-R9WG3-9XRFY-MY832",
    ("2025", "DATACENTER"): "D764K-2NDRG-47T6Q-P8T8W-YP6DF",
}
CLIENT_GVLK = {
    "Pro": "W269N-WFGWX-YVC9B-4J6C9-T83GX",
    "Pro N": "MH37W-N47XK-V7XM9-C7227-GCQG9",
    "Pro for Workstations": "NRG8B-VKK3Q-CXVCJ-9G2XF-6Q84J",
    "Pro for Workstations N": "9FNHH-K3HBT-3W4TD-6383H-6XYWF",
    "Pro Education": "6TP4R-GNPTD-KYYHQ-7B7DP-J447Y",
    "Pro Education N": "YVWGF-BXNMC-HTQYQ-CPQ99-66QFC",
    "Education": "NW6C2-QMPVW-D7KKK-3GKT6-VCFB2",
    "Education N": "2WH4N-8QGBV-H22JP-CT43Q-MDWWJ",
    "Enterprise": "NPPR9-FWDCX-D2C8J-H872K-2YT43",
    "Enterprise N": "DPH2V-TTNVB-4X9Q3-TJR4H-KHJW4",
    "Enterprise G": "YYVX9-NTFWV-6MDM3-9PT4T-4M68B",
    "Enterprise G N": "44RPN-FTY23-9VTTB-MP9BX-T84FV",
    "Enterprise LTSC": "M7XTQ-FN8P6-TTKYV-9D4CC-J462D",
    "Enterprise N LTSC": "92NFX-8DJQP-P6BBQ-THF9C-7CG2H",
    "IoT Enterprise LTSC": "KBN8V-HFGQ4-MGXVD-347P6-PDQGT",
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
VIRTIO_GUEST_TOOLS = "virtio-win-guest-tools.exe"
VIRTIO_GT_MSI = "virtio-win-gt-x64.msi"
VIRTIO_QEMU_GA_MSI = "guest-agent/qemu-ga-x86_64.msi"
# Which storage driver Setup needs to see the target disk on each bus.
STORAGE_DRIVER_FOR_BUS = {"virtio": "viostor", "scsi": "vioscsi", "sata": None}
# Drive letters the VirtIO ISO may get in WinPE (unknown in advance).
WINPE_DRIVE_LETTERS = ("D", "E", "F", "G", "H", "I")


def release_of_image(image_name: str) -> Release | None:
    """The release of an install.wim ``/IMAGE/NAME`` (``Windows Server 2022 ...``), if known."""
    words = image_name.split()
    server = words[:2] == ["Windows", "Server"]
    version = words[2 if server else 1] if len(words) > (2 if server else 1) else ""
    release = RELEASE.get(version)
    return release if release is not None and release.server == server else None


# Well-known SIDs of the built-in groups: their names are translated on localised media
# (Administratoren, Administrateurs), their SIDs are the same everywhere. The built-in
# Administrator is S-1-5-21-<machine>-500 (Administrateur, Administrador).
WELL_KNOWN_GROUP_SIDS = {
    "Administrators": "S-1-5-32-544",
    "Users": "S-1-5-32-545",
    "Remote Desktop Users": "S-1-5-32-555",
}


def group_identity(name: str) -> str:
    """The well-known SID of a built-in group named in English, else the name itself."""
    for english, sid in WELL_KNOWN_GROUP_SIDS.items():
        if english.casefold() == name.casefold():
            return sid
    return name


def is_server(version: str) -> bool:
    return RELEASE[version].server if version in RELEASE else False


def release_of_build(build: int, *, server: bool) -> str | None:
    """The release (as `windows.version` names it) of install media of a Windows build."""
    candidates = [r for r in RELEASES if r.server == server and r.builds_from <= build]
    newest = max(candidates, key=lambda r: r.builds_from, default=None)
    return newest.version if newest is not None else None


def virtio_os_folder(version: str, build: int | None = None) -> str:
    """The virtio-win OS folder for a Windows version (by build number for servers)."""
    release = RELEASE[version]
    if not release.server:
        return f"w{version}"
    build = build if build is not None else release.build
    servers = [r for r in RELEASES if r.server]
    newest = max((r for r in servers if r.build <= build), key=lambda r: r.build,
                 default=servers[0])
    return f"2k{newest.version[2:]}"


VIRTIO_OS_FOLDERS = tuple(virtio_os_folder(v) for v in VERSIONS)
# qxldod is only packaged for the older releases.
VIRTIO_DRIVER_FOLDERS = {
    driver: (("2k16", "2k19", "w10") if driver == "qxldod" else VIRTIO_OS_FOLDERS)
    for driver in VIRTIO_DRIVERS
}


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
    def image_names(self) -> tuple[str, ...]:
        """The names this edition has on retail, volume and evaluation media: client
        evaluation media add ` Evaluation` (`Windows 11 Enterprise Evaluation`); server
        evaluation media keep the retail names."""
        if is_server(self.version):
            return (self.image_name,)
        return (self.image_name, f"{self.image_name} Evaluation")

    @property
    def gvlk(self) -> str | None:
        if is_server(self.version):
            family = "DATACENTER" if "DATACENTER" in self.edition else "STANDARD"
            return SERVER_GVLK.get((self.version, family))
        return CLIENT_GVLK.get(self.edition)


def canonical_edition(version: str, edition: str) -> str | None:
    """The canonical spelling of ``edition`` for ``version`` (case-insensitive), or None."""
    choices = SERVER_EDITIONS if is_server(version) else CLIENT_EDITIONS
    wanted = edition.replace("_", " ").casefold()
    for choice in choices:
        if choice.casefold() == wanted:
            return choice
    return None


# Microsoft, "Sysprep (Generalize) a Windows installation" (learn.microsoft.com, windows-
# hardware/manufacture/desktop), "Limits on how many times you can run Sysprep": at most 1001
# times on one Windows image (8.1 / Server 2012 R2 and later), then the image must be
# recreated. A full build generalizes once, each refresh once more.
SYSPREP_GENERALIZE_LIMIT = 1001
