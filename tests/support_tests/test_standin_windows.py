"""The stand-in Windows ISO of the hypervisor tier: its cache pruning, its GPT disk, its
El Torito entries as `osbuild media prepare-uefi` sees them."""

from __future__ import annotations

import os
import struct
import time
import uuid
import zlib
from pathlib import Path

import pytest

from osbuild.media import eltorito
from tests.support import standin_windows
from tests.support.standin_windows import (
    ESP_TYPE,
    SECTOR,
    build_standin,
    gpt,
    missing_tools,
    prune_cache,
)

KEY = "0123456789abcdef"


def entry(cache: Path, name: str, age: float) -> Path:
    path = cache / name
    path.mkdir(parents=True)
    (path / "standin.iso").write_bytes(b"iso")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_prune_keeps_every_version_of_the_current_inputs_and_removes_old_others(
        tmp_path: Path) -> None:
    current = [entry(tmp_path, f"standin-2022-{KEY}", 10 * 86400),
               entry(tmp_path, f"standin-2025-{KEY}", 10 * 86400)]
    stale = [entry(tmp_path, "standin-2022-fedcba9876543210", 7200),
             entry(tmp_path, "standin-2025-fedcba9876543210", 7200)]
    in_use = entry(tmp_path, "standin-2022-aaaaaaaaaaaaaaaa", 60)  # another checkout's
    other = entry(tmp_path, "unrelated-cache", 10 * 86400)

    removed = prune_cache(tmp_path, KEY, grace=3600)

    assert removed == stale
    assert not any(p.exists() for p in stale)
    assert all((p / "standin.iso").is_file() for p in (*current, in_use, other))


def test_prune_removes_a_young_entry_of_other_inputs_once_the_grace_is_zero(
        tmp_path: Path) -> None:
    young = entry(tmp_path, "standin-2022-aaaaaaaaaaaaaaaa", 1)
    assert prune_cache(tmp_path, KEY, grace=0) == [young]


def test_gpt_has_valid_headers_and_one_esp() -> None:
    total, first, last = 49152, 2048, 49152 - 34
    disk = bytearray(total * SECTOR)
    for offset, data in gpt(total, first, last):
        disk[offset:offset + len(data)] = data
    assert disk[510:512] == b"\x55\xaa" and disk[446 + 4] == 0xEE  # protective MBR
    for lba, other in ((1, total - 1), (total - 1, 1)):
        raw = bytes(disk[lba * SECTOR:lba * SECTOR + 92])
        (sig, rev, size, crc, _, current, backup, first_usable, last_usable, _guid,
         entries_lba, count, entry_size, entries_crc) = struct.unpack("<8sIIIIQQQQ16sQIII", raw)
        assert (sig, rev, size, current, backup) == (b"EFI PART", 0x10000, 92, lba, other)
        assert crc == zlib.crc32(raw[:16] + b"\0\0\0\0" + raw[20:])
        assert (first_usable, last_usable) == (34, total - 34)
        entries = bytes(disk[entries_lba * SECTOR:entries_lba * SECTOR + count * entry_size])
        assert entries_crc == zlib.crc32(entries)
        kind, _, start, end = struct.unpack_from("<16s16sQQ", entries)
        assert (uuid.UUID(bytes_le=kind), start, end) == (ESP_TYPE, first, last)
        assert set(entries[entry_size:]) == {0}
    # The guest's install-state sector lies between the GPT and the partition.
    assert 34 <= standin_windows.STATE_SECTOR < first


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason="the stand-in's Debian packages are missing")
def test_standin_iso_boots_efi_only_after_prepare_uefi(tmp_path: Path) -> None:
    media = build_standin(tmp_path / "cache", "2025")
    before = eltorito.read_boot_entries(media.iso)
    assert [(e.platform, e.path) for e in before] == [
        ("BIOS", "isolinux/isolinux.bin"), ("EFI", eltorito.EFI_STOCK_IMAGE)]
    result = eltorito.prepare_uefi(media.iso, tmp_path / "prepared.iso")
    assert result.changed
    efi = eltorito.efi_entry(result.after)
    assert efi is not None and efi.path == eltorito.EFI_NOPROMPT_IMAGE
    assert eltorito.bios_entry(result.after) == eltorito.bios_entry(before)
