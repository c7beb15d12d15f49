"""A server's serial console log, returned the way Nova's os-getConsoleOutput returns it."""

from __future__ import annotations

import re

# libvirt keeps the log file; Nova's libvirt driver reads only its last 100 KiB.
CONSOLE_CAP = 100 * 1024
# Nova strips these before answering (everything below 0x20 except \t and \n).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")


class ConsoleLog:
    def __init__(self) -> None:
        self._data = bytearray()

    def write_line(self, text: str) -> None:
        self._data += text.encode("utf-8", "replace") + b"\n"
        if len(self._data) > CONSOLE_CAP:
            # The file keeps growing; reads see only the tail, so keeping the tail is exact.
            del self._data[: len(self._data) - CONSOLE_CAP]

    def truncate(self) -> None:
        """QEMU restarted (stop/start): libvirt opens a fresh log."""
        self._data.clear()

    def raw(self) -> bytes:
        return bytes(self._data)

    def output(self, length: int | None = None) -> str:
        """Nova's answer: 100 KiB cap, then `length` lines from the end, then stripping."""
        data = bytes(self._data[-CONSOLE_CAP:])
        if length is not None:
            # Nova splits on \n and keeps the last `length` pieces; a log ending in \n has an
            # empty last piece, so length=1 yields '' and length=N yields N-1 lines.
            data = b"" if length == 0 else b"\n".join(data.split(b"\n")[-length:])
        return _CONTROL.sub("", data.decode("ascii", "replace"))
