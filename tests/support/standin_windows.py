"""A bootable stand-in for a Windows install ISO, built from Debian packages, for real QEMU.

The ISO boots Debian's kernel with a busybox initramfs whose ``/init`` (``standin_init.sh``)
plays Windows Setup at the level osbuild sees: it finds the config ISO by its label, prints
the answer file's and the plan's markers on ttyS0, writes an installed system to the first
disk (as Windows does: an MBR disk under BIOS, a GPT disk with an EFI system partition
under UEFI; both carry the same kernel and initramfs), reboots into it, and follows the
power-off protocol after ``sysprep:start``
(the declared hold at the tests' pace, ``sysprep:ok``, power-off 1 s later). The image captured
from that disk boots as the deployed system and prints cloudbase-init's closing lines.

Boot paths, like Windows media: BIOS through isolinux; UEFI through the El Torito EFI image
``efi/microsoft/boot/efisys.bin``, which, like Windows' loader left waiting for a key press,
does not start Setup (shim finds no GRUB and returns to the firmware), and
``efisys_noprompt.bin``, which boots straight away once ``osbuild media
prepare-uefi`` pointed the EFI entry at it. The EFI images and the installed disk's ESP boot
Debian's Microsoft-signed shim, Debian's signed GRUB and the signed kernel, so the same
media boot under Secure Boot with Microsoft's keys enrolled (OVMF_*_4M.ms.fd); the guest
prints the firmware it booted under (``standin: firmware UEFI, SecureBoot=1``, read from
efivarfs).

The ISO also carries a real ``sources/install.wim`` made by wimlib (``wimtools``) with the
editions of the Windows version asked for, so preflight's media inspection sees real
editions. Built once per content and cached under ``cache_dir``; entries built from other
inputs are pruned (see :func:`prune_cache`).

Needs (Debian): linux-image-amd64, busybox-static, isolinux, syslinux, syslinux-common,
mtools, xorriso, wimtools, kmod, shim-signed, grub-efi-amd64-signed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from osbuild.media import windows
from osbuild.media.eltorito import EFI_NOPROMPT_IMAGE, EFI_STOCK_IMAGE

INIT_SCRIPT = Path(__file__).with_name("standin_init.sh")
# The drivers the guest needs: sata/ide cdroms and disks, ISO 9660, virtio and virtio-scsi
# disks, and efivarfs (the Secure Boot state).
MODULES = ("ahci", "ata_piix", "sr_mod", "sd_mod", "isofs", "virtio_blk", "virtio_pci",
           "virtio_scsi", "efivarfs")
TOOLS = ("xorriso", "syslinux", "mformat", "mcopy", "mmd", "wimlib-imagex", "modprobe")
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
SYSLINUX_BIOS = Path("/usr/lib/syslinux/modules/bios")
BUSYBOX = Path("/bin/busybox")
# Secure Boot's chain as Debian ships it: shim signed by Microsoft's UEFI CA, which loads
# GRUB signed by Debian (its config in /EFI/debian, built in), which loads the signed kernel.
SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB_EFI = Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
GRUB_PREFIX = "EFI/debian"
DISK_MB = 24
PARTITION_START = 1024 * 1024
SECTOR = 512
STATE_SECTOR = 64  # the guest's install state (the init script's), clear of MBR and GPT
GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
# Guest seconds per real second: the tests run osbuild with --time-scale 10, and the guest
# holds the declared sysprep hold for hold / pace real seconds.
DEFAULT_PACE = 10
KERNEL_CMDLINE = "console=ttyS0,115200 quiet panic=10"
CACHE_PREFIX = "standin-"
# An entry of other inputs is pruned only when no session used it for this long: a session
# of another checkout may be about to read it (each use touches the entry).
PRUNE_GRACE = 3600.0


class StandinUnavailable(RuntimeError):
    """A package the stand-in is built from is missing (the message names it)."""


@dataclass(frozen=True)
class StandinMedia:
    iso: Path
    kernel_version: str
    editions: tuple[str, ...]


def missing_tools() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    for path in (ISOLINUX_BIN, SYSLINUX_MBR, SYSLINUX_BIOS / "ldlinux.c32", BUSYBOX, SHIM,
                 GRUB_EFI):
        if not path.exists():
            missing.append(str(path))
    try:
        kernel()
    except StandinUnavailable as exc:
        missing.append(str(exc))
    return missing


def kernel() -> tuple[Path, str]:
    """The newest installed Debian kernel image and its version."""
    images = sorted(Path("/boot").glob("vmlinuz-*"))
    for image in reversed(images):
        version = image.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version).is_dir():
            return image, version
    raise StandinUnavailable("no kernel in /boot with modules (install linux-image-amd64)")


def inputs_key(init: str, kernel_image: Path, kver: str) -> str:
    """What every stand-in of these inputs shares: the code, the kernel, the boot chain and
    the Windows catalog (editions, build numbers)."""
    parts = [init, Path(__file__).read_text(), Path(windows.__file__).read_text(), kver]
    parts += [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in (kernel_image, SHIM,
                                                                           GRUB_EFI, BUSYBOX)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def build_standin(cache_dir: Path, version: str, *,
                  pace: int = DEFAULT_PACE) -> StandinMedia:
    """The stand-in ISO for Windows ``version`` (its catalog editions), cached by content."""
    missing = missing_tools()
    if missing:
        raise StandinUnavailable("stand-in Windows needs: " + ", ".join(missing))
    image, kver = kernel()
    editions = tuple(windows.Edition(version, e).image_name for e in _editions(version))
    init = (INIT_SCRIPT.read_text().replace("@PACE@", str(int(pace)))
            .replace("@STATE_SECTOR@", str(STATE_SECTOR)))
    key = inputs_key(init, image, kver)
    out = Path(cache_dir) / f"{CACHE_PREFIX}{version}-{key}"
    iso = out / "standin.iso"
    if iso.is_file():
        os.utime(out)  # in use: another checkout's session does not prune it
        prune_cache(Path(cache_dir), key)
        return StandinMedia(iso, kver, editions)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        initrd = work / "initrd.gz"
        initrd.write_bytes(initramfs(init, kver))
        tree = work / "tree"
        for folder in ("isolinux", "standin", "sources", ".disk", "boot/grub",
                       Path(EFI_STOCK_IMAGE).parent):
            (tree / folder).mkdir(parents=True)
        shutil.copy(image, tree / "isolinux" / "vmlinuz")
        shutil.copy(initrd, tree / "isolinux" / "initrd.gz")
        shutil.copy(ISOLINUX_BIN, tree / "isolinux" / "isolinux.bin")
        shutil.copy(SYSLINUX_BIOS / "ldlinux.c32", tree / "isolinux" / "ldlinux.c32")
        (tree / "isolinux" / "isolinux.cfg").write_text(
            _syslinux_cfg("/isolinux/vmlinuz", "/isolinux/initrd.gz", "setup"))
        (tree / ".disk" / "info").write_text("osbuild stand-in Windows Setup\n")
        (tree / "boot" / "grub" / "grub.cfg").write_text(
            _grub_cfg("/isolinux/vmlinuz", "/isolinux/initrd.gz", "setup"))
        efi_boot_image(work, tree / EFI_STOCK_IMAGE, boots=False)
        efi_boot_image(work, tree / EFI_NOPROMPT_IMAGE, boots=True)
        installed_disk(work, image, initrd, tree / "standin" / "disk.img")
        installed_gpt_disk(work, image, initrd, tree / "standin" / "disk-gpt.img")
        install_wim(work, version, editions, tree / "sources" / "install.wim")
        partial = work / "standin.iso"
        _run("xorriso", "-as", "mkisofs", "-quiet", "-o", str(partial), "-V", "CCSA_X64FRE",
             "-J", "-joliet-long", "-R", "-b", "isolinux/isolinux.bin",
             "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
             "-boot-info-table", "-eltorito-alt-boot", "-e", EFI_STOCK_IMAGE,
             "-no-emul-boot", str(tree))
        os.replace(partial, iso)
    prune_cache(Path(cache_dir), key)
    return StandinMedia(iso, kver, editions)


def prune_cache(cache_dir: Path, key: str, *, grace: float = PRUNE_GRACE) -> list[Path]:
    """Remove the stand-in entries not built from the inputs of ``key`` (any version) that
    no session used for ``grace`` seconds, so the cache does not grow forever; the removed."""
    removed = []
    now = time.time()
    for entry in sorted(cache_dir.glob(CACHE_PREFIX + "*")):
        if not entry.is_dir() or entry.name.endswith(f"-{key}"):
            continue
        if now - entry.stat().st_mtime < grace:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _editions(version: str) -> tuple[str, ...]:
    if windows.is_server(version):
        return tuple(windows.SERVER_EDITIONS)
    return ("Enterprise", "Pro")


def _syslinux_cfg(kernel_path: str, initrd_path: str, mode: str) -> str:
    return (f"DEFAULT standin\nPROMPT 0\nTIMEOUT 0\nLABEL standin\n  KERNEL {kernel_path}\n"
            f"  APPEND initrd={initrd_path} {KERNEL_CMDLINE} osbuild={mode}\n")


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise StandinUnavailable(f"{' '.join(args)} failed ({done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()[-600:]}")


# ----------------------------------------------------------------------------- initramfs


def module_files(kver: str) -> list[Path]:
    """The modules in :data:`MODULES` and what they depend on, in load order."""
    ordered: list[Path] = []
    for name in MODULES:
        done = subprocess.run(["modprobe", "-S", kver, "--show-depends", name],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise StandinUnavailable(f"modprobe --show-depends {name}: {done.stderr.strip()}")
        for line in done.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["insmod"] and Path(parts[1]) not in ordered:
                ordered.append(Path(parts[1]))  # "builtin X" lines need nothing
    return ordered


def initramfs(init: str, kver: str) -> bytes:
    """A gzipped newc cpio: busybox, /init, the modules and their load order."""
    entries: list[tuple[str, int, bytes, int]] = []  # (path, mode, data, rdev)
    for folder in ("bin", "dev", "proc", "sys", "lib", "lib/modules", "config", "media"):
        entries.append((folder, stat.S_IFDIR | 0o755, b"", 0))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", os.makedev(5, 1)))
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes(), 0))
    entries.append(("init", stat.S_IFREG | 0o755, init.encode(), 0))
    order = []
    for module in module_files(kver):
        data = module.read_bytes()
        name = module.name
        if name.endswith(".xz"):
            import lzma

            data, name = lzma.decompress(data), name.removesuffix(".xz")
        entries.append((f"lib/modules/{name}", stat.S_IFREG | 0o644, data, 0))
        order.append(name)
    entries.append(("modules.order", stat.S_IFREG | 0o644, ("\n".join(order) + "\n").encode(), 0))
    out = io.BytesIO()
    for ino, (path, mode, data, rdev) in enumerate(entries, start=1):
        _cpio_entry(out, ino, path, mode, data, rdev)
    _cpio_entry(out, 0, "TRAILER!!!", 0, b"", 0)
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)


def _cpio_entry(out: io.BytesIO, ino: int, path: str, mode: int, data: bytes, rdev: int) -> None:
    name = path.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0,
              os.major(rdev), os.minor(rdev), len(name), 0)
    out.write(b"070701" + "".join(f"{v:08X}" for v in fields).encode() + name)
    out.write(b"\0" * (-(110 + len(name)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


# ----------------------------------------------------------------------------- disk, wim


def _fat(image: str, sectors: int, label: str, files: dict[str, Path],
         hidden: int = 0) -> None:
    """Format ``image`` (``path`` or ``path@@offset``) as FAT with ``files`` (FAT path ->
    source) in it."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mformat", "-i", image, "-T", str(sectors), "-h", "64", "-s", "32",
                    "-H", str(hidden), "-v", label, "::"], check=True, capture_output=True,
                   env=env)
    folders = sorted({str(parent) for name in files for parent in Path(name).parents
                      if str(parent) != "."}, key=len)
    for folder in folders:
        subprocess.run(["mmd", "-i", image, f"::{folder}"], check=True, capture_output=True,
                       env=env)
    for name, src in files.items():
        subprocess.run(["mcopy", "-i", image, str(src), f"::{name}"], check=True,
                       capture_output=True, env=env)


def _efi_files(work: Path, grub_cfg: str | None) -> dict[str, Path]:
    """The removable-media boot path: shim as BOOTX64.EFI and, with a config, GRUB beside
    it (shim loads grubx64.efi from its own folder) and its config where GRUB's built-in
    prefix looks when it was loaded from a disk partition."""
    if grub_cfg is None:
        return {"EFI/BOOT/BOOTX64.EFI": SHIM}
    cfg = work / f"grub-{hashlib.sha256(grub_cfg.encode()).hexdigest()[:8]}.cfg"
    cfg.write_text(grub_cfg)
    return {"EFI/BOOT/BOOTX64.EFI": SHIM, "EFI/BOOT/grubx64.efi": GRUB_EFI,
            f"{GRUB_PREFIX}/grub.cfg": cfg}


def _grub_cfg(kernel_path: str, initrd_path: str, mode: str) -> str:
    return (f"set timeout=0\nlinux {kernel_path} {KERNEL_CMDLINE} osbuild={mode}\n"
            f"initrd {initrd_path}\nboot\n")


def efi_boot_image(work: Path, dest: Path, *, boots: bool) -> None:
    """An El Torito EFI image (FAT). One that ``boots`` (efisys_noprompt.bin) starts shim
    and GRUB; GRUB, loaded from an El Torito image, cannot read that image and finds the
    ISO by its ``/.disk/info`` and reads ``/boot/grub/grub.cfg`` there (as on Debian's
    CDs). One that does not (efisys.bin) stands for Windows' "Press any key" loader that
    nobody answers: shim finds no GRUB and returns to the firmware, which boots the next
    device."""
    files = _efi_files(work, _grub_cfg("/isolinux/vmlinuz", "/isolinux/initrd.gz", "setup")
                       if boots else None)
    size = sum(p.stat().st_size for p in files.values()) + 512 * 1024
    sectors = -(-size // (32 * SECTOR)) * 32
    with dest.open("wb") as fh:
        fh.truncate(sectors * SECTOR)
    _fat(str(dest), sectors, "EFISYS", files)


def installed_disk(work: Path, image: Path, initrd: Path, dest: Path) -> None:
    """An MBR disk: syslinux's MBR, one active FAT partition with syslinux, the kernel and
    the initramfs booting with ``osbuild=disk``."""
    with dest.open("wb") as fh:
        fh.truncate(DISK_MB * 1024 * 1024)
    part = f"{dest}@@{PARTITION_START}"
    sectors = (DISK_MB * 1024 * 1024 - PARTITION_START) // SECTOR
    cfg = work / "syslinux.cfg"
    cfg.write_text(_syslinux_cfg("/vmlinuz", "/initrd.gz", "disk"))
    _fat(part, sectors, "STANDIN", {"vmlinuz": image, "initrd.gz": initrd, "syslinux.cfg": cfg},
         hidden=PARTITION_START // SECTOR)
    _run("syslinux", "--offset", str(PARTITION_START), "--install", str(dest))
    mbr = bytearray(SYSLINUX_MBR.read_bytes()[:440].ljust(440, b"\0"))
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x06, b"\xfe\xff\xff",
                        PARTITION_START // SECTOR, sectors)
    table = bytes(mbr) + b"\0" * 6 + entry + b"\0" * 48 + b"\x55\xaa"
    with dest.open("r+b") as fh:
        fh.write(table)


def installed_gpt_disk(work: Path, image: Path, initrd: Path, dest: Path) -> None:
    """A GPT disk whose one partition is an EFI system partition: shim, GRUB, the kernel
    and the initramfs booting with ``osbuild=disk`` (what Windows Setup writes under UEFI:
    GPT with an ESP; firmware boots EFI/BOOT/BOOTX64.EFI of it)."""
    total = DISK_MB * 1024 * 1024 // SECTOR
    first, last = PARTITION_START // SECTOR, total - 34  # the backup GPT takes 33 sectors
    with dest.open("wb") as fh:
        fh.truncate(total * SECTOR)
    files = {**_efi_files(work, _grub_cfg("/vmlinuz", "/initrd.gz", "disk")),
             "vmlinuz": image, "initrd.gz": initrd}
    _fat(f"{dest}@@{PARTITION_START}", last - first + 1, "ESP", files, hidden=first)
    with dest.open("r+b") as fh:
        for offset, data in gpt(total, first, last):
            fh.seek(offset)
            fh.write(data)


def gpt(total: int, first: int, last: int) -> list[tuple[int, bytes]]:
    """(byte offset, bytes) of a protective MBR and primary and backup GPT of a disk of
    ``total`` sectors with one EFI system partition from ``first`` to ``last``."""
    disk_guid = uuid.uuid5(uuid.NAMESPACE_URL, "osbuild-standin-disk")
    part_guid = uuid.uuid5(uuid.NAMESPACE_URL, "osbuild-standin-esp")
    entry = struct.pack("<16s16sQQQ72s", ESP_TYPE.bytes_le, part_guid.bytes_le, first, last,
                        0, "EFI system partition".encode("utf-16-le"))
    entries = entry.ljust(GPT_ENTRIES * GPT_ENTRY_SIZE, b"\0")
    entries_sectors = len(entries) // SECTOR

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        fields = [b"EFI PART", 0x00010000, 92, 0, 0, current, backup, 34, total - 34,
                  disk_guid.bytes_le, entries_lba, GPT_ENTRIES, GPT_ENTRY_SIZE,
                  zlib.crc32(entries)]
        layout = "<8sIIIIQQQQ16sQIII"
        crc = zlib.crc32(struct.pack(layout, *fields))
        fields[3] = crc
        return struct.pack(layout, *fields).ljust(SECTOR, b"\0")

    mbr_entry = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                            min(total - 1, 0xFFFFFFFF))
    mbr = b"\0" * 446 + mbr_entry + b"\0" * 48 + b"\x55\xaa"
    backup_entries = total - 1 - entries_sectors
    return [(0, mbr), (SECTOR, header(1, total - 1, 2)), (2 * SECTOR, entries),
            (backup_entries * SECTOR, entries),
            ((total - 1) * SECTOR, header(total - 1, 1, backup_entries))]


def install_wim(work: Path, version: str, editions: tuple[str, ...], dest: Path) -> None:
    """A real WIM with one image per edition, each with the version's build number."""
    tree = work / "wimtree" / "Windows" / "System32"
    tree.mkdir(parents=True)
    (tree / "ntoskrnl.exe").write_bytes(b"MZ" + bytes(4096))
    build = windows.BUILD_NUMBERS[version]
    for index, name in enumerate(editions, start=1):
        verb = "capture" if index == 1 else "append"
        _run("wimlib-imagex", verb, str(work / "wimtree"), str(dest), name)
        _run("wimlib-imagex", "info", str(dest), str(index),
             "--image-property", f"WINDOWS/VERSION/BUILD={build}",
             "--image-property", "WINDOWS/VERSION/MAJOR=10",
             "--image-property", "WINDOWS/ARCH=9",
             "--image-property", "WINDOWS/LANGUAGES/LANGUAGE=en-US",
             "--image-property", "WINDOWS/LANGUAGES/DEFAULT=en-US",
             "--image-property", f"FLAGS={name.rsplit(' ', 1)[-1]}",
             "--image-property", f"WINDOWS/EDITIONID={name.rsplit(' ', 1)[-1]}")
