"""The editions on Windows install media: install.wim's XML metadata, without its image data.

A WIM file starts with a 208-byte header; the resource header at offset 0x48 locates the
XML metadata (stored uncompressed, UTF-16LE), which lists every image's `/IMAGE/NAME`. So
the editions of a 5 GB ISO come from a few reads: the ISO's directories, the WIM header
and the XML. (The simulated cloud's stand-in install.wim is the XML alone.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO
from xml.etree import ElementTree

from osbuild.media import eltorito

WIM_MAGIC = b"MSWIM\0\0\0"
_HEADER_SIZE = 208
_XML_RESOURCE = 0x48
_MAX_XML = 16 * 1024 * 1024
INSTALL_IMAGES = ("sources/install.wim", "sources/install.esd")

ReadAt = Callable[[int, int], bytes]


def wim_xml(read_at: ReadAt, size: int) -> bytes | None:
    """The XML metadata of a WIM file read through ``read_at(offset, length)``."""
    head = read_at(0, min(size, _HEADER_SIZE))
    if not head.startswith(WIM_MAGIC):
        # Not a real WIM: a small file of plain XML (the simulated media) or nothing.
        if size <= _MAX_XML and head.lstrip(b"\xff\xfe\x00").startswith((b"<", b"\xef\xbb\xbf<")):
            return read_at(0, size)
        return None
    if len(head) < _XML_RESOURCE + 24:
        return None
    packed, offset, _original = struct.unpack_from("<QQQ", head, _XML_RESOURCE)
    length = packed & ((1 << 56) - 1)
    if not 0 < length <= _MAX_XML or offset + length > size:
        return None
    return read_at(offset, length)


# `/IMAGE/WINDOWS/ARCH`: the PROCESSOR_ARCHITECTURE_* values of Windows' SYSTEM_INFO.
ARCHITECTURES = {0: "x86", 5: "arm", 6: "ia64", 9: "x64", 12: "arm64"}


@dataclass(frozen=True)
class WimImage:
    """One image of an install.wim, as its XML metadata describes it."""

    index: int
    name: str  # `/IMAGE/NAME`, what the answer file selects
    edition_id: str = ""  # ServerStandard, ServerStandardCor, EnterpriseEval, ...
    installation_type: str = ""  # Server, Server Core, Client
    build: int | None = None  # 20348
    version: str | None = None  # 10.0.20348
    arch: str | None = None  # x64
    languages: tuple[str, ...] = ()

    @property
    def evaluation(self) -> bool:
        """Evaluation media, which take no product key: the edition id says so, before
        Server Core's "Cor" (`EnterpriseEval`, `ServerStandardEval`, `ServerDatacenterEvalCor`;
        a server evaluation image keeps its retail name)."""
        return "Eval" in self.edition_id

    def describe(self) -> str:
        """`Windows Server 2022 SERVERSTANDARD (index 2, 10.0.20348, x64, en-US)`."""
        facts = [f"index {self.index}"]
        facts += [fact for fact in (self.version, self.arch) if fact]
        if self.languages:
            facts.append("/".join(self.languages))
        return f"{self.name} ({', '.join(facts)})"


def _xml_text(xml: bytes) -> str:
    if xml.startswith((b"\xff\xfe", b"\xfe\xff")):
        return xml.decode("utf-16")
    if len(xml) > 1 and xml[1:2] == b"\0":
        return xml.decode("utf-16-le")
    return xml.decode("utf-8", errors="replace")


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def wim_images(xml: bytes) -> list[WimImage]:
    """Every image in WIM XML metadata (UTF-16 with or without BOM, or UTF-8); [] if unreadable.

    An image captured from a tree that is not Windows has no WINDOWS element: its version,
    architecture and languages are then unknown (None / empty)."""
    try:
        root = ElementTree.fromstring(_xml_text(xml).strip("\0 \r\n"))
    except ElementTree.ParseError:
        return []
    images = []
    for position, image in enumerate(root.iter("IMAGE"), start=1):
        name = image.findtext("NAME")
        if not name:
            continue
        info = image.find("WINDOWS")
        build = version = arch = None
        languages: tuple[str, ...] = ()
        if info is not None:
            parts = [_int(info.findtext(f"VERSION/{tag}")) for tag in ("MAJOR", "MINOR", "BUILD")]
            build = parts[2]
            if None not in parts:
                version = ".".join(str(part) for part in parts)
            code = _int(info.findtext("ARCH"))
            arch = ARCHITECTURES.get(code, str(code)) if code is not None else None
            languages = tuple(lang.text.strip() for lang in info.findall("LANGUAGES/LANGUAGE")
                              if lang.text and lang.text.strip())
        images.append(WimImage(
            index=_int(image.get("INDEX")) or position,
            name=name,
            edition_id=(image.findtext("WINDOWS/EDITIONID") or image.findtext("FLAGS") or ""),
            installation_type=image.findtext("WINDOWS/INSTALLATIONTYPE") or "",
            build=build, version=version, arch=arch, languages=languages,
        ))
    return images


def image_names(xml: bytes) -> list[str]:
    """Every `/IMAGE/NAME` in WIM XML metadata."""
    return [image.name for image in wim_images(xml)]


class NotWindowsMedia(Exception):
    """An ISO without `sources/install.wim` or `install.esd`: not Windows install media."""

    def __init__(self, top_level: list[str]) -> None:
        super().__init__("no sources/install.wim or sources/install.esd")
        self.top_level = top_level  # what its root holds, for the message


def _top_level(files: dict[str, dict[str, str]]) -> list[str]:
    """The root's entries as the richest namespace names them (not their 8.3 twins)."""
    richest = next((key for key in ("udf_path", "joliet_path", "rr_path", "iso_path")
                    if any(key in where for where in files.values())), "iso_path")
    names = {where[richest].lstrip("/").split("/")[0].split(";")[0]
             for where in files.values() if richest in where}
    return sorted(names, key=str.casefold)


def iso_images(fp: IO[bytes], *, name: str = "ISO") -> list[WimImage] | None:
    """The images of the install image on a Windows ISO; None when its metadata cannot be
    read; :class:`NotWindowsMedia` when the ISO has no install image at all."""
    iso = eltorito.open_iso(fp, name=name)
    try:
        files = eltorito.list_files(iso)
        where = next((files[p] for p in INSTALL_IMAGES if p in files), None)
        if where is None:
            raise NotWindowsMedia(_top_level(files))
        extents = iso.get_file_byte_extents(**where)
    finally:
        iso.close()
    size = sum(length for _start, length in extents)

    def read_at(offset: int, length: int) -> bytes:
        out = bytearray()
        position = 0
        for start, run in extents:
            if offset < position + run and offset + length > position:
                lo = max(offset, position) - position
                hi = min(offset + length, position + run) - position
                fp.seek(start + lo)
                out += fp.read(hi - lo)
            position += run
        return bytes(out)

    xml = wim_xml(read_at, size)
    return wim_images(xml) if xml is not None else None


def iso_editions(fp: IO[bytes], *, name: str = "ISO") -> list[str] | None:
    """The `/IMAGE/NAME`s of the install image on a Windows ISO; None when unreadable."""
    try:
        images = iso_images(fp, name=name)
    except NotWindowsMedia:
        return None
    return [image.name for image in images] if images is not None else None
