"""A Glance image's data as a seekable file, read with HTTP Range requests.

Enough to read an ISO's directories and a few files without downloading gigabytes. Blocks
are cached; a cloud that ignores Range (200 with the whole image) is detected on the first
read and nothing more is fetched.
"""

from __future__ import annotations

import io
from typing import Any

BLOCK = 256 * 1024
MAX_BLOCKS = 64


class RangesUnsupported(Exception):
    """The image service answered a Range request with the whole image."""


class ImageRanges(io.RawIOBase):
    def __init__(self, conn: Any, image_id: str, size: int) -> None:
        self._conn = conn
        self._image_id = image_id
        self._size = size
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(self._size - self._pos, 0))
        done = 0
        while done < wanted:
            index, within = divmod(self._pos, BLOCK)
            block = self._block(index)
            chunk = block[within:within + wanted - done]
            if not chunk:
                break
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
            self._pos += len(chunk)
        return done

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            if len(self._blocks) >= MAX_BLOCKS:
                self._blocks.pop(next(iter(self._blocks)))
            start = index * BLOCK
            end = min(start + BLOCK, self._size) - 1
            self._blocks[index] = self._fetch(start, end)
        return self._blocks[index]

    def _fetch(self, start: int, end: int) -> bytes:
        self.requests += 1
        response = self._conn.image.get(f"/images/{self._image_id}/file",
                                        headers={"Range": f"bytes={start}-{end}"},
                                        stream=True, raise_exc=True)
        try:
            if response.status_code != 206:
                raise RangesUnsupported(f"HTTP {response.status_code} to a Range request")
            return bytes(response.content)
        finally:
            response.close()
