"""The config ISO: readable through ISO9660, Joliet and Rock Ridge, reproducible, streamed."""

from __future__ import annotations

import io
import os
import time
import tracemalloc
from pathlib import Path

import pycdlib
import pytest

from osbuild.errors import InvalidInput
from osbuild.media import configiso, layout
from osbuild.spec import load_spec

from .helpers import EXAMPLES, MINIMAL_SPEC, write_spec


def _tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _read(iso: pycdlib.PyCdlib, **path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


@pytest.mark.parametrize("name", EXAMPLES)
def test_iso_reads_back_with_all_three_name_spaces(name, example_spec, render) -> None:
    media = render(example_spec(name))
    expected = _tree_files(media.root)
    assert layout.ANSWER_FILE in expected
    assert {layout.TAG_FILE, layout.NONCE_FILE, layout.PLAN_FILE, layout.FIRSTLOGON_SCRIPT,
            layout.CLOUDBASE_CONF, layout.CLOUDBASE_UNATTEND_CONF} <= set(expected)
    iso = pycdlib.PyCdlib()
    iso.open(str(media.iso_path))
    try:
        assert iso.has_joliet() and iso.has_rock_ridge()
        assert iso.pvd.volume_identifier.decode().strip() == layout.VOLUME_LABEL
        # Windows shows the Joliet label
        joliet_label = iso.joliet_vd.volume_identifier.decode("utf-16-be").strip()
        assert joliet_label == layout.VOLUME_LABEL
        joliet, rock = {}, {}
        for kind, found in (("joliet_path", joliet), ("rr_path", rock)):
            for directory, _dirs, files in iso.walk(**{kind: "/"}):
                for file in files:
                    full = f"{directory.rstrip('/')}/{file}"
                    found[full.lstrip("/")] = _read(iso, **{kind: full})
        assert joliet == expected
        assert rock == expected
        # ISO9660 names are the d-character forms of the same files
        plain = {}
        for directory, _dirs, files in iso.walk(iso_path="/"):
            for file in files:
                full = f"{directory.rstrip('/')}/{file}"
                plain[full] = _read(iso, iso_path=full)
        assert sorted(plain.values()) == sorted(expected.values())
        assert "/AUTOUNATTEND.XML;1" in plain
    finally:
        iso.close()
    assert media.size == media.iso_path.stat().st_size
    assert media.sha256 == configiso.file_sha256(media.iso_path)


def test_same_inputs_give_byte_identical_iso(example_spec, render, monkeypatch) -> None:
    spec = example_spec("ws2022-standard.yaml")
    first = render(spec)
    time.sleep(1.1)  # a wall-clock timestamp would now differ
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        second = render(spec)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert first.iso_path.read_bytes() == second.iso_path.read_bytes()
    assert first.sha256 == second.sha256


def test_different_nonce_gives_different_iso(example_spec, render) -> None:
    spec = example_spec("ws2022-standard.yaml")
    first = render(spec)
    second = render(spec, nonce="f" * 32)
    assert first.sha256 != second.sha256
    assert (second.root / layout.NONCE_FILE).read_text().strip() == "f" * 32


def test_source_date_epoch_sets_the_timestamps(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("x")
    configiso.build_iso(tmp_path / "tree", tmp_path / "a.iso")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    configiso.build_iso(tmp_path / "tree", tmp_path / "b.iso")
    iso = pycdlib.PyCdlib()
    iso.open(str(tmp_path / "b.iso"))
    try:
        created = iso.pvd.volume_creation_date
        assert (created.year, created.month, created.dayofmonth) == (2023, 11, 14)
    finally:
        iso.close()
    assert (tmp_path / "a.iso").read_bytes() != (tmp_path / "b.iso").read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InvalidInput, match="SOURCE_DATE_EPOCH"):
        configiso.build_iso(tmp_path / "tree", tmp_path / "c.iso")


def test_iso9660_names_are_unique_and_valid(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "dir-one").mkdir(parents=True)
    for name in ("a-b.ps1", "a_b.ps1", "A.B.C.txt", "no_extension", "x" * 40 + ".conf"):
        (tree / "dir-one" / name).write_text(name)
    configiso.build_iso(tree, tmp_path / "out.iso")
    iso = pycdlib.PyCdlib()
    iso.open(str(tmp_path / "out.iso"))
    try:
        names = [f for _, _, files in iso.walk(iso_path="/") for f in files]
        assert len(names) == len(set(names)) == 5
        for name in names:
            stem = name.removesuffix(";1")
            assert len(stem) <= 30
            assert set(stem) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
        assert _read(iso, joliet_path="/dir-one/a_b.ps1") == b"a_b.ps1"
    finally:
        iso.close()


def test_symlinks_in_the_tree_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink("/etc/passwd", tree / "passwd")
    with pytest.raises(InvalidInput, match="symlink"):
        configiso.build_iso(tree, tmp_path / "out.iso")


def test_a_large_msi_is_streamed_not_loaded(tmp_path: Path, render) -> None:
    size = 48 * 1024 * 1024
    spec_path = write_spec(tmp_path / "big", MINIMAL_SPEC, msi=False)
    with (tmp_path / "big" / "CloudbaseInitSetup_x64.msi").open("wb") as msi:
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            msi.write(block)
    spec = load_spec(spec_path)
    tracemalloc.start()
    try:
        media = render(spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert media.size > size
    # Holding the MSI even once would need `size` bytes; streaming needs a few buffers.
    assert peak < size // 4, f"peak {peak} bytes while rendering a {size}-byte MSI"
