"""`osbuild media inspect` on real media: install.wim/install.esd made by wimlib, virtio-win."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pycdlib
import pytest

from osbuild.cli import main
from osbuild.media import windows
from osbuild.media.virtio_iso import read_virtio_iso
from osbuild_sim.media import virtio_iso

EDITIONS = ("Windows Server 2025 SERVERSTANDARDCORE", "Windows Server 2025 SERVERDATACENTER")


def _wimlib(*args: str) -> None:
    # Debian's wimtools; .ci/run installs it (README: the tests' system tools).
    subprocess.run(["wimlib-imagex", *args], check=True, capture_output=True, text=True)


def _real_install_image(tmp_path: Path, suffix: str) -> Path:
    """A real WIM with two images (UTF-16 XML, as Windows media have); ESD = solid LZMS."""
    tree = tmp_path / "tree" / "Windows" / "System32"
    tree.mkdir(parents=True)
    (tree / "ntoskrnl.exe").write_bytes(b"MZ" + bytes(4096))
    wim = tmp_path / "install.wim"
    _wimlib("capture", str(tmp_path / "tree"), str(wim), EDITIONS[0])
    _wimlib("append", str(tmp_path / "tree"), str(wim), EDITIONS[1])
    if suffix == "wim":
        return wim
    esd = tmp_path / "install.esd"
    _wimlib("export", str(wim), "all", str(esd), "--solid")
    return esd


def _iso_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, vol_ident="CCSA_X64FRE")
    made: set[str] = set()
    for path, data in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in made:
                iso.add_directory("/" + folder.upper(), joliet_path="/" + folder)
                made.add(folder)
        iso.add_fp(io.BytesIO(data), len(data), "/" + path.upper().replace("-", "_") + ";1",
                   joliet_path="/" + path)
    out = tmp_path / "media.iso"
    iso.write(str(out))
    iso.close()
    return out


@pytest.mark.parametrize("kind", ["wim", "esd"])
def test_inspect_lists_the_editions_of_a_real_install_image(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _real_install_image(tmp_path, kind)
    iso = _iso_with(tmp_path, {f"sources/install.{kind}": image.read_bytes()})
    assert main(["media", "inspect", str(iso)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "no El Torito boot catalog (not bootable media)"
    assert out[1:] == [f"image 1: {EDITIONS[0]}", f"image 2: {EDITIONS[1]}"]


def test_inspect_lists_the_driver_folders_of_a_virtio_win_iso(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iso = tmp_path / "virtio-win.iso"
    iso.write_bytes(virtio_iso())
    assert main(["media", "inspect", str(iso)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "driver viostor: 2k16 2k19 2k22 2k25 w10 w11" in out
    assert "driver qxldod: 2k16 2k19 w10" in out
    assert out[-1] == "guest tools: yes; QEMU guest agent: yes"


def test_an_older_virtio_win_without_a_release_folder(tmp_path: Path) -> None:
    # virtio-win releases older than Server 2025 carry no 2k25 folders.
    files = {f"{d}/{f}/amd64/{d.lower()}.inf": b"[Version]\r\n"
             for d in ("viostor", "NetKVM") for f in ("2k19", "2k22")}
    iso = _iso_with(tmp_path, files)
    with iso.open("rb") as fp:
        contents = read_virtio_iso(fp, name="old.iso")
    assert contents is not None
    assert contents.drivers == {"NetKVM": ("2k19", "2k22"), "viostor": ("2k19", "2k22")}
    assert contents.missing_for("2k25", ("viostor", "NetKVM")) == ["viostor", "NetKVM"]
    assert contents.missing_for(windows.virtio_os_folder("2022"), ("viostor",)) == []
    assert not contents.guest_tools and not contents.qemu_ga


def test_an_iso_with_neither(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iso = _iso_with(tmp_path, {"readme.txt": b"hello"})
    assert main(["media", "inspect", str(iso)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("no readable sources/install.wim")
