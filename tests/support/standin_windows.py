"""A bootable stand-in for a Windows install ISO, built from Debian packages, for real QEMU.

The ISO boots (BIOS, isolinux) Debian's kernel with a busybox initramfs whose ``/init``
(``standin_init.sh``) plays Windows Setup at the level osbuild sees: it finds the config ISO
by its label, prints the answer file's and the plan's markers on ttyS0, writes an installed
system (``standin/disk.img``: an MBR disk with syslinux, the same kernel and initramfs) to
the first disk, reboots into it, and follows the power-off protocol after ``sysprep:start``
(the declared hold at the tests' pace, ``sysprep:ok``, power-off 1 s later). The image captured
from that disk boots as the deployed system and prints cloudbase-init's closing lines.

The ISO also carries a real ``sources/install.wim`` made by wimlib (``wimtools``) with the
editions of the Windows version asked for, so preflight's media inspection sees real
editions. Built once per content and cached under ``cache_dir``.

Needs (Debian): linux-image-amd64, busybox-static, isolinux, syslinux, syslinux-common,
mtools, xorriso, wimtools, kmod.
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
from dataclasses import dataclass
from pathlib import Path

from osbuild.media import windows

INIT_SCRIPT = Path(__file__).with_name("standin_init.sh")
# The drivers the guest needs: sata/ide cdroms and disks, ISO 9660, virtio disks.
MODULES = ("ahci", "ata_piix", "sr_mod", "sd_mod", "isofs", "virtio_blk", "virtio_pci")
TOOLS = ("xorriso", "syslinux", "mformat", "mcopy", "wimlib-imagex", "modprobe")
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
SYSLINUX_BIOS = Path("/usr/lib/syslinux/modules/bios")
BUSYBOX = Path("/bin/busybox")
DISK_MB = 24
PARTITION_START = 1024 * 1024
# Guest seconds per real second: the tests run osbuild with --time-scale 10, and the guest
# holds the declared sysprep hold for hold / pace real seconds.
DEFAULT_PACE = 10
KERNEL_CMDLINE = "console=ttyS0,115200 quiet panic=10"


class StandinUnavailable(RuntimeError):
    """A package the stand-in is built from is missing (the message names it)."""


@dataclass(frozen=True)
class StandinMedia:
    iso: Path
    kernel_version: str
    editions: tuple[str, ...]


def missing_tools() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    for path in (ISOLINUX_BIN, SYSLINUX_MBR, SYSLINUX_BIOS / "ldlinux.c32", BUSYBOX):
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


def build_standin(cache_dir: Path, version: str, *,
                  pace: int = DEFAULT_PACE) -> StandinMedia:
    """The stand-in ISO for Windows ``version`` (its catalog editions), cached by content."""
    missing = missing_tools()
    if missing:
        raise StandinUnavailable("stand-in Windows needs: " + ", ".join(missing))
    image, kver = kernel()
    editions = tuple(windows.Edition(version, e).image_name for e in _editions(version))
    init = INIT_SCRIPT.read_text().replace("@PACE@", str(int(pace)))
    parts = [init, Path(__file__).read_text(), kver, str(image.stat().st_mtime_ns), *editions]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    out = Path(cache_dir) / f"standin-{version}-{key}"
    iso = out / "standin.iso"
    if iso.is_file():
        return StandinMedia(iso, kver, editions)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        initrd = work / "initrd.gz"
        initrd.write_bytes(initramfs(init, kver))
        tree = work / "tree"
        (tree / "isolinux").mkdir(parents=True)
        (tree / "standin").mkdir()
        (tree / "sources").mkdir()
        shutil.copy(image, tree / "isolinux" / "vmlinuz")
        shutil.copy(initrd, tree / "isolinux" / "initrd.gz")
        shutil.copy(ISOLINUX_BIN, tree / "isolinux" / "isolinux.bin")
        shutil.copy(SYSLINUX_BIOS / "ldlinux.c32", tree / "isolinux" / "ldlinux.c32")
        (tree / "isolinux" / "isolinux.cfg").write_text(
            _syslinux_cfg("/isolinux/vmlinuz", "/isolinux/initrd.gz", "setup"))
        installed_disk(work, image, initrd, tree / "standin" / "disk.img")
        install_wim(work, version, editions, tree / "sources" / "install.wim")
        partial = work / "standin.iso"
        _run("xorriso", "-as", "mkisofs", "-quiet", "-o", str(partial), "-V", "CCSA_X64FRE",
             "-J", "-joliet-long", "-R", "-b", "isolinux/isolinux.bin",
             "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
             "-boot-info-table", str(tree))
        os.replace(partial, iso)
    return StandinMedia(iso, kver, editions)


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


def installed_disk(work: Path, image: Path, initrd: Path, dest: Path) -> None:
    """An MBR disk: syslinux's MBR, one active FAT partition with syslinux, the kernel and
    the initramfs booting with ``osbuild=disk``."""
    with dest.open("wb") as fh:
        fh.truncate(DISK_MB * 1024 * 1024)
    part = f"{dest}@@{PARTITION_START}"
    sectors = (DISK_MB * 1024 * 1024 - PARTITION_START) // 512
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for args in (["mformat", "-i", part, "-T", str(sectors), "-h", "64", "-s", "32",
                  "-H", str(PARTITION_START // 512), "-v", "STANDIN", "::"],):
        subprocess.run(args, check=True, capture_output=True, env=env)
    cfg = work / "syslinux.cfg"
    cfg.write_text(_syslinux_cfg("/vmlinuz", "/initrd.gz", "disk"))
    for src, name in ((image, "vmlinuz"), (initrd, "initrd.gz"), (cfg, "syslinux.cfg")):
        subprocess.run(["mcopy", "-i", part, str(src), f"::{name}"], check=True,
                       capture_output=True, env=env)
    _run("syslinux", "--offset", str(PARTITION_START), "--install", str(dest))
    mbr = bytearray(SYSLINUX_MBR.read_bytes()[:440].ljust(440, b"\0"))
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x06, b"\xfe\xff\xff",
                        PARTITION_START // 512, sectors)
    table = bytes(mbr) + b"\0" * 6 + entry + b"\0" * 48 + b"\x55\xaa"
    with dest.open("r+b") as fh:
        fh.write(table)


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
