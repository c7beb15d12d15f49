"""install.wim's XML metadata: from a real WIM header, from the simulated stand-in, on an ISO."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest

from osbuild.cloud.image_ranges import ImageRanges, RangesUnsupported
from osbuild.media import wim
from osbuild_sim.media import install_wim_xml, windows_iso


def _real_wim(xml: bytes) -> bytes:
    """A WIM with a 208-byte header whose XML resource points past some image data."""
    data = b"\x00" * 4096
    header = bytearray(208)
    header[:8] = wim.WIM_MAGIC
    struct.pack_into("<I", header, 8, 208)
    offset = 208 + len(data)
    struct.pack_into("<QQQ", header, 0x48, len(xml), offset, len(xml))
    return bytes(header) + data + xml


def test_names_from_a_real_wim_header() -> None:
    xml = install_wim_xml("2022", ("SERVERSTANDARD", "SERVERDATACENTER"))
    blob = _real_wim(xml)
    found = wim.wim_xml(lambda offset, length: blob[offset:offset + length], len(blob))
    assert found is not None
    assert wim.image_names(found) == ["Windows Server 2022 SERVERSTANDARD",
                                      "Windows Server 2022 SERVERDATACENTER"]


def test_garbage_is_not_a_wim() -> None:
    blob = b"\x01\x02" * 300
    assert wim.wim_xml(lambda o, n: blob[o:o + n], len(blob)) is None


def test_editions_on_an_iso() -> None:
    iso = windows_iso("11", editions=("Pro", "Enterprise"))
    assert wim.iso_editions(io.BytesIO(iso)) == ["Windows 11 Pro", "Windows 11 Enterprise"]


class _Response:
    def __init__(self, status: int, content: bytes) -> None:
        self.status_code = status
        self.content = content

    def close(self) -> None:
        pass


class _Conn:
    def __init__(self, data: bytes, honour_ranges: bool = True) -> None:
        self.data = data
        self.honour = honour_ranges
        self.image = self

    def get(self, url: str, headers: dict[str, str], **_: Any) -> _Response:
        start, end = (int(x) for x in headers["Range"].removeprefix("bytes=").split("-"))
        if not self.honour:
            return _Response(200, self.data)
        return _Response(206, self.data[start:end + 1])


def test_image_ranges_reads_only_what_is_asked() -> None:
    iso = windows_iso("2022")
    reader = ImageRanges(_Conn(iso), "id", len(iso))
    assert wim.iso_editions(io.BufferedReader(reader))
    assert reader.requests <= 2


def test_a_cloud_without_ranges_is_detected_at_once() -> None:
    iso = windows_iso("2022")
    reader = ImageRanges(_Conn(iso, honour_ranges=False), "id", len(iso))
    with pytest.raises(RangesUnsupported):
        reader.read(10)
    assert reader.requests == 1


def _inspected(tmp_path: Any, capsys: pytest.CaptureFixture[str], xml: bytes) -> list[str]:
    """`osbuild media inspect` of an ISO whose install.wim carries ``xml``."""
    import pycdlib

    from osbuild.cli import main

    blob = _real_wim(xml)
    iso = pycdlib.PyCdlib()
    iso.new(joliet=3)
    boot = b"\xeb" * 2048
    iso.add_fp(io.BytesIO(boot), len(boot), "/ETFSBOOT.COM;1", joliet_path="/etfsboot.com")
    iso.add_eltorito("/ETFSBOOT.COM;1", bootcatfile="/BOOT.CAT;1", joliet_bootcatfile="/boot.cat")
    iso.add_directory("/SOURCES", joliet_path="/sources")
    iso.add_fp(io.BytesIO(blob), len(blob), "/SOURCES/INSTALL.WIM;1",
               joliet_path="/sources/install.wim")
    path = tmp_path / "win.iso"
    iso.write(str(path))
    iso.close()
    assert main(["media", "inspect", str(path)]) == 0
    return capsys.readouterr().out.splitlines()


def test_media_inspect_lists_the_editions_of_a_real_format_wim(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = _inspected(tmp_path, capsys,
                     install_wim_xml("2025", ("SERVERSTANDARD", "SERVERDATACENTER")))
    assert out[-2:] == [
        "image 1: Windows Server 2025 SERVERSTANDARD (10.0.26100, x64, en-US, ServerStandard)",
        "image 2: Windows Server 2025 SERVERDATACENTER (10.0.26100, x64, en-US, "
        "ServerDatacenter)"]


def test_media_inspect_tells_evaluation_media(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # A server evaluation image keeps its retail name: its edition id is all that tells an
    # operator to leave windows.product_key out.
    out = _inspected(tmp_path, capsys,
                     install_wim_xml("2019", ("SERVERSTANDARDCORE",), evaluation=True))
    assert out[-1] == ("image 1: Windows Server 2019 SERVERSTANDARDCORE (10.0.17763, x64, "
                       "en-US, ServerStandardEvalCor, evaluation)")


def test_images_carry_version_architecture_and_languages() -> None:
    xml = install_wim_xml("2019", ("SERVERSTANDARD",), language="de-DE")
    [image] = wim.wim_images(_real_wim(xml)[208 + 4096:])
    assert (image.index, image.name, image.build, image.version, image.arch, image.languages) \
        == (1, "Windows Server 2019 SERVERSTANDARD", 17763, "10.0.17763", "x64", ("de-DE",))
    assert image.describe() == ("Windows Server 2019 SERVERSTANDARD "
                                "(index 1, 10.0.17763, x64, de-DE)")


def test_architecture_codes_are_windows_processor_architectures() -> None:
    [x86] = wim.wim_images(install_wim_xml("10", ("Pro",), arch=0))
    [arm] = wim.wim_images(install_wim_xml("11", ("Pro",), arch=12))
    assert (x86.arch, arm.arch) == ("x86", "arm64")


def test_client_evaluation_media_name_their_images_differently() -> None:
    images = wim.wim_images(install_wim_xml("11", ("Enterprise",), evaluation=True))
    assert [(i.name, i.edition_id) for i in images] == [
        ("Windows 11 Enterprise Evaluation", "EnterpriseEval")]
    # Server evaluation media keep the retail names.
    assert wim.image_names(install_wim_xml("2022", ("SERVERSTANDARD",), evaluation=True)) == [
        "Windows Server 2022 SERVERSTANDARD"]


def test_release_of_a_build_number() -> None:
    from osbuild.media import windows

    assert [windows.release_of_build(b, server=True) for b in (14393, 17763, 20348, 26100)] \
        == ["2016", "2019", "2022", "2025"]
    assert [windows.release_of_build(b, server=False) for b in (19045, 22631, 26100)] \
        == ["10", "11", "11"]
    assert windows.release_of_build(9600, server=True) is None
