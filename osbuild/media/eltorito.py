"""Read an ISO's El Torito boot entries and switch Windows media to the prompt-less EFI image.

Windows installation media carry two boot entries: BIOS loads ``boot/etfsboot.com`` and
UEFI loads the FAT image ``efi/microsoft/boot/efisys.bin``, whose loader waits for a key
press ("Press any key to boot from CD or DVD...") and otherwise gives up. The same media
ship ``efisys_noprompt.bin``, which boots straight away; an unattended UEFI install needs
the EFI entry pointed at it.

The rewrite changes the 32-byte EFI entry of the boot catalog in place (load RBA and
sector count) and copies every other byte unchanged. Regenerating the whole image with
pycdlib would also work, but it rebuilds the UDF and ISO 9660 structures of a multi-GB
ISO; a one-entry patch keeps the vendor's layout byte for byte and streams at copy speed.
pycdlib is used to parse the catalog and to find which file each entry points at.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from osbuild.errors import InvalidInput

SECTOR = 2048
# El Torito counts an entry's "virtual sectors" in units of 512 bytes.
VIRTUAL_SECTOR = 512
ENTRY_SIZE = 32

BIOS_BOOT_IMAGE = "boot/etfsboot.com"
EFI_STOCK_IMAGE = "efi/microsoft/boot/efisys.bin"
EFI_NOPROMPT_IMAGE = "efi/microsoft/boot/efisys_noprompt.bin"

PLATFORM_BIOS = 0x00
PLATFORM_EFI = 0xEF
PLATFORM_NAMES = {0x00: "BIOS", 0x01: "PowerPC", 0x02: "Mac", 0xEF: "EFI"}

# Entry layout: indicator, media type, load segment, system type, unused, sector count,
# load RBA (little endian); the rest is selection criteria.
_SECTOR_COUNT = struct.Struct("<H")
_SECTOR_COUNT_AT = 6
_LOAD_RBA = struct.Struct("<L")
_LOAD_RBA_AT = 8

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class BootEntry:
    platform: str  # "BIOS", "EFI", or "platform 0x.." for anything else
    platform_id: int
    bootable: bool
    load_rba: int  # first sector of the boot image
    sector_count: int  # in 512-byte virtual sectors
    path: str | None  # the file the entry loads (lowercase, POSIX), None if no file matches
    catalog_offset: int  # byte offset of the 32-byte entry in the ISO


@dataclass(frozen=True)
class PrepareResult:
    before: tuple[BootEntry, ...]
    after: tuple[BootEntry, ...]
    changed: bool  # False when the EFI entry already pointed at efisys_noprompt.bin


def open_iso(fp: IO[bytes], *, name: str) -> pycdlib.PyCdlib:
    """Parse an ISO (headers and directories only; file data stays in ``fp``)."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(cast(BinaryIO, fp))
    except PyCdlibException as exc:
        raise InvalidInput([f"{name}: not an ISO 9660 image ({_first_line(exc)})"]) from None
    except (struct.error, ValueError, IndexError, EOFError):
        raise InvalidInput([f"{name}: not an ISO 9660 image (truncated or damaged)"]) from None
    return iso


def normalize_path(path: str) -> str:
    """ISO 9660 ``/EFI/MICROSOFT/BOOT/EFISYS.BIN;1`` and UDF ``/efi/...`` compare equal."""
    path = re.sub(r";\d+$", "", path.strip("/"))
    if path.endswith("."):
        path = path[:-1]
    return path.lower()


def list_files(iso: pycdlib.PyCdlib) -> dict[str, dict[str, str]]:
    """Every file on the ISO: normalized path -> the pycdlib keyword that reads it.

    Namespaces are tried from the richest (UDF, Joliet, Rock Ridge) to plain ISO 9660, so
    long names win; Windows media keep their real names only in UDF.
    """
    found: dict[str, dict[str, str]] = {}
    namespaces: list[str] = []
    if iso.has_udf():
        namespaces.append("udf_path")
    if iso.has_joliet():
        namespaces.append("joliet_path")
    if iso.has_rock_ridge():
        namespaces.append("rr_path")
    namespaces.append("iso_path")
    for key in namespaces:
        for dirpath, _dirs, files in iso.walk(**{key: "/"}):
            for filename in files:
                full = dirpath.rstrip("/") + "/" + filename
                found.setdefault(normalize_path(full), {key: full})
    return found


def read_file(iso: pycdlib.PyCdlib, files: dict[str, dict[str, str]], path: str) -> bytes | None:
    """The content of ``path`` (any case), or None when the ISO has no such file."""
    where = files.get(normalize_path(path))
    if where is None:
        return None
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **where)
    return out.getvalue()


def _extent_map(iso: pycdlib.PyCdlib, files: dict[str, dict[str, str]]) -> dict[int, str]:
    """First data sector of every file -> its path (to name what a boot entry loads)."""
    extents: dict[int, str] = {}
    for path, where in files.items():
        try:
            runs = iso.get_file_byte_extents(**where)
        except PyCdlibException:
            continue
        if runs and runs[0][0] % SECTOR == 0:
            extents.setdefault(runs[0][0] // SECTOR, path)
    return extents


def _file_size(iso: pycdlib.PyCdlib, files: dict[str, dict[str, str]], path: str) -> int:
    runs = iso.get_file_byte_extents(**files[normalize_path(path)])
    return sum(length for _offset, length in runs)


def _entries(iso: pycdlib.PyCdlib, fp: IO[bytes], name: str) -> list[BootEntry]:
    catalog = iso.eltorito_boot_catalog
    if catalog is None:
        raise InvalidInput([f"{name}: has no El Torito boot catalog (not bootable media)"])
    files = list_files(iso)
    extents = _extent_map(iso, files)
    parsed: list[tuple[int, Any]] = [(catalog.validation_entry.platform_id, catalog.initial_entry)]
    for section in catalog.sections:
        parsed.extend((section.platform_id, entry) for entry in section.section_entries)
    parsed.extend(
        (catalog.validation_entry.platform_id, entry) for entry in catalog.standalone_entries
    )

    # pycdlib does not keep where each entry sits, so find its record in the raw catalog,
    # walking forward so that two identical records still map to distinct offsets.
    start = catalog.extent_location() * SECTOR
    fp.seek(start)
    raw = fp.read(SECTOR * 4)
    cursor = ENTRY_SIZE  # skip the validation entry
    out = []
    for platform_id, entry in parsed:
        record = entry.record()
        offset = -1
        for pos in range(cursor, len(raw) - ENTRY_SIZE + 1, ENTRY_SIZE):
            if raw[pos : pos + ENTRY_SIZE] == record:
                offset = pos
                break
        if offset < 0:
            raise InvalidInput([f"{name}: El Torito boot catalog could not be located"])
        cursor = offset + ENTRY_SIZE
        out.append(
            BootEntry(
                platform=PLATFORM_NAMES.get(platform_id, f"platform 0x{platform_id:02x}"),
                platform_id=platform_id,
                bootable=entry.boot_indicator == 0x88,
                load_rba=entry.load_rba,
                sector_count=entry.sector_count,
                path=extents.get(entry.load_rba),
                catalog_offset=start + offset,
            )
        )
    return out


def read_boot_entries_fp(fp: IO[bytes], *, name: str = "ISO") -> list[BootEntry]:
    """The boot entries of the ISO in ``fp``, in catalog order."""
    iso = open_iso(fp, name=name)
    try:
        return _entries(iso, fp, name)
    finally:
        iso.close()


def read_boot_entries(path: str | Path) -> list[BootEntry]:
    path = Path(path)
    try:
        with path.open("rb") as fp:
            return read_boot_entries_fp(fp, name=str(path))
    except OSError as exc:
        raise InvalidInput([f"{path}: cannot read: {exc.strerror}"]) from None


def efi_entry(entries: list[BootEntry] | tuple[BootEntry, ...]) -> BootEntry | None:
    return next((e for e in entries if e.platform_id == PLATFORM_EFI), None)


def bios_entry(entries: list[BootEntry] | tuple[BootEntry, ...]) -> BootEntry | None:
    return next((e for e in entries if e.platform_id == PLATFORM_BIOS), None)


def patch_efi_entry(fp: IO[bytes], *, name: str = "ISO") -> PrepareResult:
    """Point the EFI entry of the ISO open read-write in ``fp`` at efisys_noprompt.bin."""
    iso = open_iso(fp, name=name)
    try:
        before = _entries(iso, fp, name)
        target = efi_entry(before)
        if target is None:
            raise InvalidInput(
                [f"{name}: has no EFI boot entry (only "
                 + ", ".join(e.platform for e in before) + "); it cannot boot with UEFI"]
            )
        files = list_files(iso)
        if normalize_path(EFI_NOPROMPT_IMAGE) not in files:
            raise InvalidInput(
                [f"{name}: has no {EFI_NOPROMPT_IMAGE}; is this Windows installation media?"]
            )
        runs = iso.get_file_byte_extents(**files[normalize_path(EFI_NOPROMPT_IMAGE)])
        new_size = _file_size(iso, files, EFI_NOPROMPT_IMAGE)
        old_size = (
            _file_size(iso, files, target.path) if target.path in files else None
        )
    finally:
        iso.close()
    if not runs or runs[0][0] % SECTOR:
        raise InvalidInput([f"{name}: {EFI_NOPROMPT_IMAGE} is not sector aligned"])
    new_rba = runs[0][0] // SECTOR
    # Keep the vendor's convention: a count that covered the whole old image grows with the
    # new one; a token count (oscdimg writes 1) stays as it is.
    new_count = target.sector_count
    if old_size is not None and target.sector_count == _ceil_div(old_size, VIRTUAL_SECTOR):
        new_count = min(_ceil_div(new_size, VIRTUAL_SECTOR), 0xFFFF)
    changed = (new_rba, new_count) != (target.load_rba, target.sector_count)
    if changed:
        fp.seek(target.catalog_offset + _SECTOR_COUNT_AT)
        fp.write(_SECTOR_COUNT.pack(new_count))
        fp.seek(target.catalog_offset + _LOAD_RBA_AT)
        fp.write(_LOAD_RBA.pack(new_rba))
        fp.flush()
    fp.seek(0)
    after = read_boot_entries_fp(fp, name=name)
    if efi_entry(after) is None or efi_entry(after).path != normalize_path(EFI_NOPROMPT_IMAGE):  # type: ignore[union-attr]
        raise InvalidInput([f"{name}: the EFI entry could not be rewritten"])
    return PrepareResult(before=tuple(before), after=tuple(after), changed=changed)


def prepare_uefi(
    src_path: str | Path,
    dst_path: str | Path,
    *,
    progress: ProgressCallback | None = None,
) -> PrepareResult:
    """Copy ``src_path`` to ``dst_path`` with the EFI entry switched to efisys_noprompt.bin.

    The BIOS entry and every other byte stay as they were. The copy is streamed and lands
    under a temporary name first, so a failure never leaves a half-written ``dst_path``.
    """
    src, dst = Path(src_path), Path(dst_path)
    if not src.is_file():
        raise InvalidInput([f"{src}: no such file"])
    if dst.exists() and dst.resolve() == src.resolve():
        raise InvalidInput([f"{dst}: the output must be a different file than the input"])
    # Validate before copying gigabytes.
    entries = read_boot_entries(src)
    if efi_entry(entries) is None:
        raise InvalidInput(
            [f"{src}: has no EFI boot entry (only "
             + ", ".join(e.platform for e in entries) + "); it cannot boot with UEFI"]
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _staged(dst) as tmp:
        _copy(src, tmp, progress)
        with tmp.open("r+b") as fp:
            result = patch_efi_entry(fp, name=str(src))
    return result


def _copy(src: Path, dst: Path, progress: ProgressCallback | None) -> None:
    total = src.stat().st_size
    if progress is None:
        shutil.copyfile(src, dst)
        return
    done = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(8 * 1024 * 1024):
            fout.write(chunk)
            done += len(chunk)
            progress(done, total)


@contextlib.contextmanager
def _staged(dst: Path) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    # mkstemp creates 0600; give the result the mode a plain open() would (umask applies).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _ceil_div(value: int, unit: int) -> int:
    return -(-value // unit)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
