"""El Torito: reading boot entries and switching Windows media to the prompt-less EFI image."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pycdlib
import pytest

from osbuild.cli import main
from osbuild.errors import InvalidInput
from osbuild.media import eltorito

ETFSBOOT = b"\xeb\x3cETFSBOOT" + bytes(range(256)) * 15
EFISYS = b"stock efisys " * 600  # 7.8 KB
NOPROMPT = b"noprompt efisys " * 1000  # 16 KB


def _build_iso(
    path: Path, *, efi: bool = True, noprompt: bool = True, udf: bool = False,
    eltorito_entries: bool = True,
) -> Path:
    """A small Windows-like ISO: BIOS -> boot/etfsboot.com, EFI -> efisys.bin."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, joliet=3, udf="2.60" if udf else None, vol_ident="TEST_MEDIA")
    joliet = not udf  # the UDF variant keeps long names only in UDF, like Windows media
    for d, j in (("/BOOT", "/boot"), ("/EFI", "/efi"), ("/EFI/MICROSOF", "/efi/microsoft"),
                 ("/EFI/MICROSOF/BOOT", "/efi/microsoft/boot")):
        iso.add_directory(d, joliet_path=j if joliet else None, udf_path=j if udf else None)
    files = [("/BOOT/ETFSBOOT.COM;1", "/boot/etfsboot.com", ETFSBOOT),
             ("/EFI/MICROSOF/BOOT/EFISYS.BIN;1", "/efi/microsoft/boot/efisys.bin", EFISYS),
             ("/SETUP.EXE;1", "/setup.exe", b"MZ setup")]
    if noprompt:
        files.append(("/EFI/MICROSOF/BOOT/EFISYS_N.BIN;1",
                      "/efi/microsoft/boot/efisys_noprompt.bin", NOPROMPT))
    for iso_path, long_path, data in files:
        iso.add_fp(io.BytesIO(data), len(data), iso_path,
                   joliet_path=long_path if joliet else None, udf_path=long_path if udf else None)
    if eltorito_entries:
        iso.add_eltorito("/BOOT/ETFSBOOT.COM;1", bootcatfile="/BOOT.CAT;1", boot_load_size=8,
                         boot_load_seg=0x07C0)
        if efi:
            iso.add_eltorito("/EFI/MICROSOF/BOOT/EFISYS.BIN;1", bootcatfile="/BOOT.CAT;1",
                             efi=True)
    iso.write(str(path))
    iso.close()
    return path


def _read(path: Path, long_path: str) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = io.BytesIO()
        key = "udf_path" if iso.has_udf() else "joliet_path"
        iso.get_file_from_iso_fp(out, **{key: long_path})
        return out.getvalue()
    finally:
        iso.close()


def test_reads_both_entries_and_the_files_they_load(tmp_path: Path) -> None:
    entries = eltorito.read_boot_entries(_build_iso(tmp_path / "win.iso"))
    assert [(e.platform, e.path, e.bootable) for e in entries] == [
        ("BIOS", "boot/etfsboot.com", True),
        ("EFI", "efi/microsoft/boot/efisys.bin", True),
    ]
    bios, efi = entries
    assert bios.sector_count == 8
    assert efi.sector_count == -(-len(EFISYS) // 512)


def test_entries_resolve_through_udf_names(tmp_path: Path) -> None:
    # Windows media keep their real names only in UDF; ISO 9660 has 8.3 names.
    entries = eltorito.read_boot_entries(_build_iso(tmp_path / "udf.iso", udf=True))
    assert [e.path for e in entries] == ["boot/etfsboot.com", "efi/microsoft/boot/efisys.bin"]


@pytest.mark.parametrize("udf", [False, True])
def test_prepare_switches_only_the_efi_entry(tmp_path: Path, udf: bool) -> None:
    src = _build_iso(tmp_path / "win.iso", udf=udf)
    dst = tmp_path / "out" / "win-noprompt.iso"
    original = src.read_bytes()

    result = eltorito.prepare_uefi(src, dst)

    assert result.changed
    after = eltorito.read_boot_entries(dst)
    assert [(e.platform, e.path) for e in after] == [
        ("BIOS", "boot/etfsboot.com"),
        ("EFI", "efi/microsoft/boot/efisys_noprompt.bin"),
    ]
    # The count covered the whole stock image, so it now covers the whole new one.
    assert after[1].sector_count == -(-len(NOPROMPT) // 512)
    assert after[0] == result.before[0]  # BIOS entry untouched
    assert src.read_bytes() == original  # the input is never modified
    changed = [i for i, (a, b) in enumerate(zip(original, dst.read_bytes(), strict=True))
               if a != b]
    efi_at = result.before[1].catalog_offset
    assert changed and all(efi_at <= i < efi_at + eltorito.ENTRY_SIZE for i in changed)
    assert _read(dst, "/efi/microsoft/boot/efisys_noprompt.bin") == NOPROMPT


def test_prepare_is_idempotent(tmp_path: Path) -> None:
    once = tmp_path / "once.iso"
    twice = tmp_path / "twice.iso"
    eltorito.prepare_uefi(_build_iso(tmp_path / "win.iso"), once)
    result = eltorito.prepare_uefi(once, twice)
    assert not result.changed
    assert twice.read_bytes() == once.read_bytes()


def test_prepare_streams_instead_of_loading_the_iso(tmp_path: Path) -> None:
    src = _build_iso(tmp_path / "win.iso")
    with src.open("r+b") as fp:  # a sparse 96 MB tail stands in for a multi-GB install.wim
        fp.truncate(96 * 1024 * 1024)
    seen: list[tuple[int, int]] = []
    tracemalloc.start()
    try:
        eltorito.prepare_uefi(src, tmp_path / "out.iso",
                              progress=lambda done, total: seen.append((done, total)))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024
    assert seen[-1] == (96 * 1024 * 1024, 96 * 1024 * 1024)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert eltorito.efi_entry(eltorito.read_boot_entries(tmp_path / "out.iso")).path == (
        "efi/microsoft/boot/efisys_noprompt.bin"
    )


def test_not_an_iso(tmp_path: Path) -> None:
    src = tmp_path / "random.iso"
    src.write_bytes(b"\x00\x01" * 40000)
    with pytest.raises(InvalidInput, match="not an ISO 9660 image"):
        eltorito.prepare_uefi(src, tmp_path / "out.iso")
    assert not (tmp_path / "out.iso").exists()


def test_no_efi_entry(tmp_path: Path) -> None:
    src = _build_iso(tmp_path / "bios-only.iso", efi=False)
    with pytest.raises(InvalidInput, match="has no EFI boot entry"):
        eltorito.prepare_uefi(src, tmp_path / "out.iso")
    assert not (tmp_path / "out.iso").exists()


def test_no_noprompt_image(tmp_path: Path) -> None:
    src = _build_iso(tmp_path / "old.iso", noprompt=False)
    with pytest.raises(InvalidInput, match=r"efisys_noprompt\.bin"):
        eltorito.prepare_uefi(src, tmp_path / "out.iso")
    # The failed copy is not left behind, under its name or a temporary one.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.iso"]


def test_not_bootable_media(tmp_path: Path) -> None:
    src = _build_iso(tmp_path / "data.iso", eltorito_entries=False)
    with pytest.raises(InvalidInput, match="no El Torito boot catalog"):
        eltorito.read_boot_entries(src)


def test_output_must_differ_from_input(tmp_path: Path) -> None:
    src = _build_iso(tmp_path / "win.iso")
    with pytest.raises(InvalidInput, match="different file"):
        eltorito.prepare_uefi(src, src)


def test_cli_prepare_uefi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _build_iso(tmp_path / "win.iso")
    dst = tmp_path / "win-noprompt.iso"
    assert main(["media", "prepare-uefi", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "EFI   efi/microsoft/boot/efisys_noprompt.bin" in out
    assert eltorito.efi_entry(eltorito.read_boot_entries(dst)).path.endswith("noprompt.bin")

    # An existing output needs --force; bad usage and bad input exit 2 with one line.
    assert main(["media", "prepare-uefi", str(src), str(dst)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["media", "prepare-uefi", str(src), str(dst), "--force"]) == 0
    assert main(["media", "prepare-uefi", str(src)]) == 2
    assert main(["media", "prepare-uefi", "--image", "x", str(src), str(dst)]) == 2
    bios_only = _build_iso(tmp_path / "bios.iso", efi=False)
    assert main(["media", "prepare-uefi", str(bios_only), str(tmp_path / "b.iso")]) == 2
    err = capsys.readouterr().err
    assert "has no EFI boot entry" in err and "Traceback" not in err


def test_cli_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["media", "inspect", str(_build_iso(tmp_path / "win.iso"))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("BIOS  boot/etfsboot.com (bootable")
    assert out[1].startswith("EFI   efi/microsoft/boot/efisys.bin (bootable")


def test_cli_prepare_uefi_in_the_simulated_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from osbuild_sim import SimCloud

    with SimCloud(speed=600.0) as sim:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.write_clouds_yaml(tmp_path / "c.yaml")))
        common = ["--os-cloud", sim.cloud_name, "--work-dir", str(tmp_path)]
        # The sim seeds a prepared Server 2025 ISO already: nothing to upload.
        assert main(["media", "prepare-uefi", "--image", "windows-server-2025-x64.iso",
                     *common]) == 0
        assert "already prepared" in capsys.readouterr().out

        args = ["media", "prepare-uefi", "--image", "windows-server-2022-x64.iso", *common]
        assert main(args) == 0
        assert "uploaded windows-server-2022-x64-noprompt.iso" in capsys.readouterr().out
        conn = sim.connect()
        prepared = list(conn.image.images(name="windows-server-2022-x64-noprompt.iso"))
        assert len(prepared) == 1
        image = prepared[0]
        assert image.status == "active" and image.disk_format == "iso"
        assert image.visibility == "private"
        assert image.properties["osbuild_uefi_noprompt"] == "true"
        assert image.os_distro == "windows"  # the source's own properties come along
        data = conn.image.download_image(image).content
        entries = eltorito.read_boot_entries_fp(io.BytesIO(data))
        assert [e.path for e in entries] == ["boot/etfsboot.com",
                                             "efi/microsoft/boot/efisys_noprompt.bin"]
        # The temporary copy is gone, and a second run finds the prepared image.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
        assert main(args) == 0
        assert "already prepared" in capsys.readouterr().out
        assert len(list(conn.image.images(name="windows-server-2022-x64-noprompt.iso"))) == 1
        assert main(["media", "prepare-uefi", "--image", "no-such.iso", *common]) == 2
        assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_prepare_uefi_survives_resets_around_its_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seen against real Glance: the connection reset right after the upload, and the status
    # check that followed died with keystoneauth's ConnectFailure and a traceback.
    from osbuild_sim import SimCloud

    with SimCloud(speed=600.0) as sim:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.write_clouds_yaml(tmp_path / "c.yaml")))
        sim.faults.add_rule(service="image", method="PUT", path="/file$", error="drop-after",
                            times=1)
        sim.faults.add_rule(service="image", method="GET", path="/v2/images/[0-9a-f-]+$",
                            error="drop", times=2)
        sim.faults.add_rule(service="image", method="GET", path="/v2/images$", error=503,
                            times=1)
        args = ["media", "prepare-uefi", "--image", "windows-server-2022-x64.iso",
                "--os-cloud", sim.cloud_name, "--work-dir", str(tmp_path)]
        assert main(args) == 0, capsys.readouterr().err
        assert "uploaded windows-server-2022-x64-noprompt.iso" in capsys.readouterr().out
        assert all(rule.fired for rule in sim.faults.rules)
        prepared = list(sim.connect().image.images(name="windows-server-2022-x64-noprompt.iso"))
        assert [(i.status, i.properties["osbuild_uefi_noprompt"]) for i in prepared] == [
            ("active", "true")]
