"""Small, deterministic stand-ins for Windows install media and the virtio-win ISO.

They are real ISO 9660 + Joliet images (pycdlib) with the vendor layouts the guest and
osbuild care about, each well under 1 MB: Windows media carry ``setup.exe``, the BIOS and
EFI boot images with El Torito entries for both, and ``sources/install.wim`` whose content
is the WIM's XML metadata (the part that lists images, editions and the build number);
virtio-win carries ``<Driver>/<os>/amd64/<driver>.inf`` and ``.cat`` for every driver and OS
folder (the ``.sys`` files are left out to stay small: nothing reads them), the installers at
the root and the guest agent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import re
from dataclasses import dataclass
from xml.etree import ElementTree

import pycdlib

from osbuild.media import eltorito, wim, windows
from osbuild.media.configiso import frozen_pycdlib_clock
from osbuild.media.wim import WimImage

VIRTIO_VERSION = "0.1.266"
VIRTIO_LABEL = f"virtio-win-{VIRTIO_VERSION}"
NOPROMPT_PROPERTY = "osbuild_uefi_noprompt"

INSTALL_WIM = "sources/install.wim"
BOOT_WIM = "sources/boot.wim"
SETUP_EXE = "setup.exe"

# 2024-06-01T00:00:00Z: every timestamp in the stand-ins, so the bytes never change.
_FIXED_TIME = 1717200000.0

# Windows' EditionID strings (its product-type table: PRODUCT_STANDARD_SERVER_CORE is
# "ServerStandardCor", PRODUCT_DATACENTER_EVALUATION_SERVER_CORE "ServerDatacenterEvalCor"):
# Server Core's are cut to "Cor", and evaluation media put "Eval" before it.
_SERVER_EDITION_IDS = {
    "SERVERSTANDARDCORE": ("ServerStandard", "Cor", "Server Core", "Standard"),
    "SERVERSTANDARD": ("ServerStandard", "", "Server", "Standard (Desktop Experience)"),
    "SERVERDATACENTERCORE": ("ServerDatacenter", "Cor", "Server Core", "Datacenter"),
    "SERVERDATACENTER": ("ServerDatacenter", "", "Server", "Datacenter (Desktop Experience)"),
}
_CLIENT_EDITION_IDS = {"Pro": "Professional", "Enterprise": "Enterprise", "Education": "Education"}
CLIENT_MEDIA_EDITIONS = ("Pro", "Enterprise", "Education")

@dataclass(frozen=True)
class SeedImage:
    name: str
    disk_format: str
    container_format: str
    properties: dict[str, str]
    data: bytes


# --------------------------------------------------------------------------- install.wim


def install_wim_xml(version: str, editions: tuple[str, ...] | None = None, *,
                    language: str = "en-US", evaluation: bool = False,
                    arch: int = 9) -> bytes:
    """install.wim's XML metadata (UTF-16LE with BOM, as DISM and wimlib store it).

    ``evaluation``: client evaluation media name their images `Windows 11 Enterprise
    Evaluation` (edition id `EnterpriseEval`); server evaluation media keep retail names, and
    only their edition ids say so (`ServerStandardEval`, `ServerDatacenterEvalCor`).
    ``arch``: WIM's ARCH code (9 = x64, 0 = x86, 12 = arm64)."""
    build = windows.BUILD_NUMBERS[version]
    server = windows.is_server(version)
    editions = editions or (windows.SERVER_EDITIONS if server else CLIENT_MEDIA_EDITIONS)
    root = ElementTree.Element("WIM")
    ElementTree.SubElement(root, "TOTALBYTES").text = str(4_800_000_000 + build)
    for index, edition in enumerate(editions, start=1):
        image = ElementTree.SubElement(root, "IMAGE", INDEX=str(index))
        name = windows.Edition(version, edition).image_name
        eval_suffix = ""
        if evaluation and not server:
            name, eval_suffix = f"{name} Evaluation", "Eval"
        if server:
            base, core, install_type, display = _SERVER_EDITION_IDS[edition]
            edition_id = base + ("Eval" if evaluation else "") + core
            display_name = f"Windows Server {version} {display}"
            product_type = "ServerNT"
        else:
            edition_id = _CLIENT_EDITION_IDS.get(edition, edition.replace(" ", "")) + eval_suffix
            install_type, display_name, product_type = "Client", name, "WinNT"
        ElementTree.SubElement(image, "NAME").text = name
        ElementTree.SubElement(image, "DESCRIPTION").text = name
        ElementTree.SubElement(image, "DISPLAYNAME").text = display_name
        ElementTree.SubElement(image, "FLAGS").text = edition_id
        info = ElementTree.SubElement(image, "WINDOWS")
        ElementTree.SubElement(info, "ARCH").text = str(arch)
        ElementTree.SubElement(info, "PRODUCTNAME").text = "Microsoft® Windows® Operating System"
        ElementTree.SubElement(info, "EDITIONID").text = edition_id
        ElementTree.SubElement(info, "INSTALLATIONTYPE").text = install_type
        ElementTree.SubElement(info, "PRODUCTTYPE").text = product_type
        languages = ElementTree.SubElement(info, "LANGUAGES")
        ElementTree.SubElement(languages, "LANGUAGE").text = language
        ElementTree.SubElement(languages, "DEFAULT").text = language
        ver = ElementTree.SubElement(info, "VERSION")
        for tag, value in (("MAJOR", 10), ("MINOR", 0), ("BUILD", build), ("SPBUILD", 1)):
            ElementTree.SubElement(ver, tag).text = str(value)
    text = ElementTree.tostring(root, encoding="unicode")
    return b"\xff\xfe" + text.encode("utf-16-le")


def read_wim_images(data: bytes) -> list[WimImage]:
    """The images listed in WIM XML metadata, read as osbuild's preflight reads them."""
    return wim.wim_images(data)


# --------------------------------------------------------------------------- ISO writing

def _fixed_time() -> contextlib.AbstractContextManager[None]:
    # The config ISO's clock swap, so that one lock guards every swap of pycdlib's clock.
    return frozen_pycdlib_clock(_FIXED_TIME)


class _IsoWriter:
    """Files by POSIX path; ISO 9660 level-1 names are derived (8.3, unique) as mkisofs does."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.iso = pycdlib.PyCdlib()
        # Joliet labels hold 16 characters; the primary descriptor keeps the full label.
        self.iso.new(interchange_level=1, vol_ident=label[:16], joliet=3)
        self.iso.pvd.volume_identifier = label.encode("ascii")[:32].ljust(32)
        self._dirs: dict[str, str] = {"": "/"}
        self._names: dict[str, set[str]] = {"/": set()}

    def _short(self, parent: str, name: str, *, is_dir: bool) -> str:
        stem, dot, ext = name.rpartition(".")
        if not dot or is_dir:
            stem, ext = name, ""
        stem = re.sub(r"[^A-Z0-9_]", "_", stem.upper()) or "_"
        ext = re.sub(r"[^A-Z0-9_]", "_", ext.upper())[:3]
        taken = self._names.setdefault(parent, set())
        candidate, n = stem[:8], 1
        while (candidate, ext) in {(t.split(".")[0], t.partition(".")[2]) for t in taken}:
            suffix = f"_{n}"
            candidate, n = stem[: 8 - len(suffix)] + suffix, n + 1
        full = candidate + ("." + ext if ext else "")
        taken.add(full)
        return full

    def _dir(self, path: str) -> str:
        if path in self._dirs:
            return self._dirs[path]
        parent_path, _, name = path.rpartition("/")
        parent = self._dir(parent_path)
        iso_dir = parent.rstrip("/") + "/" + self._short(parent, name, is_dir=True)
        self.iso.add_directory(iso_dir, joliet_path="/" + path)
        self._dirs[path] = iso_dir
        self._names[iso_dir] = set()
        return iso_dir

    def add(self, path: str, data: bytes) -> str:
        parent_path, _, name = path.rpartition("/")
        parent = self._dir(parent_path)
        iso_path = parent.rstrip("/") + "/" + self._short(parent, name, is_dir=False) + ";1"
        self.iso.add_fp(io.BytesIO(data), len(data), iso_path, joliet_path="/" + path)
        return iso_path

    def bytes(self) -> bytes:
        out = io.BytesIO()
        self.iso.write_fp(out)
        self.iso.close()
        return out.getvalue()


def _filler(tag: str, size: int) -> bytes:
    """Deterministic, file-specific content of ``size`` bytes."""
    seed = hashlib.sha256(tag.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


# --------------------------------------------------------------------------- the media


def windows_iso(version: str, *, noprompt: bool = False,
                editions: tuple[str, ...] | None = None, language: str = "en-US",
                evaluation: bool = False, arch: int = 9) -> bytes:
    """A Windows installer ISO for ``version``; ``noprompt`` as `prepare-uefi` leaves it;
    ``language``, ``evaluation`` and ``arch`` as :func:`install_wim_xml` takes them."""
    data = _windows_iso(version, editions, language, evaluation, arch)
    if not noprompt:
        return data
    fp = io.BytesIO(data)
    eltorito.patch_efi_entry(fp, name=f"windows-{version}")
    return fp.getvalue()


@functools.lru_cache(maxsize=16)
def _windows_iso(version: str, editions: tuple[str, ...] | None, language: str,
                 evaluation: bool, arch: int) -> bytes:
    with _fixed_time():
        iso = _IsoWriter(windows.RELEASE[version].media_label.replace("EN-US", language.upper()))
        build = windows.BUILD_NUMBERS[version]
        iso.add("boot/bcd", _filler(f"bcd-{version}", 3000))
        bios = iso.add(eltorito.BIOS_BOOT_IMAGE, b"\xeb\x3cETFSBOOT" + _filler("etfs", 4086))
        iso.add("bootmgr", b"BOOTMGR stand-in\r\n" + _filler(f"bootmgr-{version}", 2000))
        iso.add("efi/boot/bootx64.efi", b"MZ" + _filler(f"bootx64-{version}", 3000))
        efi = iso.add(
            eltorito.EFI_STOCK_IMAGE,
            b"\xeb\x3c\x90MSDOS5.0 efisys (press any key to boot)" + _filler("efisys", 16_000),
        )
        iso.add(
            eltorito.EFI_NOPROMPT_IMAGE,
            b"\xeb\x3c\x90MSDOS5.0 efisys_noprompt" + _filler("efisys-np", 20_000),
        )
        iso.add(SETUP_EXE, b"MZ" + f"Windows Setup {version} build {build}".encode()
                + _filler(f"setup-{version}", 1000))
        iso.add(BOOT_WIM, b"MSWIM\x00\x00\x00" + _filler(f"bootwim-{version}", 6000))
        iso.add(INSTALL_WIM, install_wim_xml(version, editions, language=language,
                                             evaluation=evaluation, arch=arch))
        iso.add("sources/lang.ini", f"[Available UI Languages]\r\n{language} = 3\r\n".encode())
        iso.iso.add_eltorito(bios, bootcatfile="/BOOT.CAT;1", boot_load_size=8,
                             boot_load_seg=0x07C0, media_name="noemul")
        iso.iso.add_eltorito(efi, bootcatfile="/BOOT.CAT;1", efi=True, media_name="noemul")
        return iso.bytes()


@functools.lru_cache(maxsize=2)
def virtio_iso(releases: tuple[str, ...] | None = None) -> bytes:
    """virtio-win with its real layout (`<Driver>/<os>/amd64`), installers and guest agent.

    ``releases`` limits the OS folders, like an older virtio-win without the newest one."""
    with _fixed_time():
        iso = _IsoWriter(VIRTIO_LABEL)
        for driver in windows.VIRTIO_DRIVERS:
            for folder in windows.VIRTIO_DRIVER_FOLDERS[driver]:
                if releases is not None and folder not in releases:
                    continue
                base = f"{driver}/{folder}/amd64/{driver.lower()}"
                iso.add(f"{base}.inf", f"; {driver} for {folder}\r\n[Version]\r\n"
                        f"Signature=\"$WINDOWS NT$\"\r\nDriverVer=10/01/2024,100.95.104."
                        f"{VIRTIO_VERSION[-3:]}\r\n".encode())
                # The driver's signed catalog (attestation signed by Microsoft on w10+).
                iso.add(f"{base}.cat", b"0\x82" + _filler(base, 200))
        iso.add(windows.VIRTIO_GT_MSI, _msi_bytes("virtio-win-gt-x64", 4000))
        iso.add("virtio-win-gt-x86.msi", _msi_bytes("virtio-win-gt-x86", 3000))
        iso.add(windows.VIRTIO_GUEST_TOOLS, b"MZ" + _filler("guest-tools", 6000))
        iso.add(windows.VIRTIO_QEMU_GA_MSI, _msi_bytes("qemu-ga-x86_64", 3000))
        iso.add("guest-agent/qemu-ga-i386.msi", _msi_bytes("qemu-ga-i386", 3000))
        iso.add("virtio-win_license.txt", b"BSD-3-Clause and GPL-2.0 stand-in\r\n")
        return iso.bytes()


def _msi_bytes(tag: str, size: int) -> bytes:
    # MSI files are OLE compound documents; keep their magic so type sniffers agree.
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + f"{tag} stand-in".encode() + _filler(tag, size)


def cloudbase_msi_standin() -> bytes:
    """A small stand-in for CloudbaseInitSetup_x64.msi (demo and tests put it beside specs)."""
    return _msi_bytes("CloudbaseInitSetup_x64", 16_000)


# The releases whose example specs boot UEFI: their ISOs are also seeded as `prepare-uefi`
# leaves them (no "press any key" prompt).
_UEFI_EXAMPLES = ("2025", "11")


def seed_iso_name(version: str) -> str:
    """The Glance name of the simulator's installer ISO for ``version`` (the examples use it)."""
    if windows.is_server(version):
        return f"windows-server-{version}-x64.iso"
    # The Windows 11 example is the Enterprise one.
    return "windows-11-enterprise-x64.iso" if version == "11" else f"windows-{version}-x64.iso"


@functools.lru_cache(maxsize=1)
def _seed_images() -> tuple[SeedImage, ...]:
    seeds = []
    for release in windows.RELEASES:
        version = release.version
        name = seed_iso_name(version)
        props = {"os_distro": "windows", "os_version": version}
        seeds.append(SeedImage(name, "iso", "bare", props, windows_iso(version)))
        if version in _UEFI_EXAMPLES:
            noprompt = name.removesuffix(".iso") + "-noprompt.iso"
            seeds.append(
                SeedImage(noprompt, "iso", "bare", {**props, NOPROMPT_PROPERTY: "true"},
                          windows_iso(version, noprompt=True))
            )
    seeds.append(SeedImage("virtio-win.iso", "iso", "bare",
                           {"virtio_win_version": VIRTIO_VERSION}, virtio_iso()))
    return tuple(seeds)


def seed_images() -> list[SeedImage]:
    """The stand-in media the simulated Glance starts with (names the example specs use)."""
    return [
        SeedImage(s.name, s.disk_format, s.container_format, dict(s.properties), s.data)
        for s in _seed_images()
    ]
