"""The editions on Windows install media: install.wim's XML metadata, without its image data.

A WIM file starts with a 208-byte header; the resource header at offset 0x48 locates the
XML metadata (stored uncompressed, UTF-16LE), which lists every image's `/IMAGE/NAME`. So
the editions of a 5 GB ISO come from a few reads: the ISO's directories, the WIM header
and the XML. (The simulated cloud's stand-in install.wim is the XML alone.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable
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


def image_names(xml: bytes) -> list[str]:
    """Every `/IMAGE/NAME` in WIM XML metadata (UTF-16 with or without BOM, or UTF-8)."""
    if xml.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = xml.decode("utf-16")
    elif len(xml) > 1 and xml[1:2] == b"\0":
        text = xml.decode("utf-16-le")
    else:
        text = xml.decode("utf-8", errors="replace")
    try:
        root = ElementTree.fromstring(text.strip("\0 \r\n"))
    except ElementTree.ParseError:
        return []
    return [name for image in root.iter("IMAGE") if (name := image.findtext("NAME"))]


def iso_editions(fp: IO[bytes], *, name: str = "ISO") -> list[str] | None:
    """The `/IMAGE/NAME`s of the install image on a Windows ISO; None when unreadable."""
    iso = eltorito.open_iso(fp, name=name)
    try:
        files = eltorito.list_files(iso)
        where = next((files[p] for p in INSTALL_IMAGES if p in files), None)
        if where is None:
            return None
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
    return image_names(xml) if xml is not None else None
