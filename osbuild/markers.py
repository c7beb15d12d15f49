"""The serial-port progress marker grammar, shared by the guest scripts, the watcher and the sim.

A marker is one line on COM1, written by osbuild's own guest scripts:

    OSBUILD:<nonce>:<stage>:<status>[:<detail>]

- ``nonce``: 32 lowercase hex digits, generated per build and read by the guest *at run
  time* from ``osbuild/nonce.txt`` on the config ISO. No script or answer file contains it,
  so a logged or echoed copy of a script can never produce a valid marker.
- ``stage``: one of :data:`STAGES` (``script-NN`` for the user's scripts is reported as
  stage ``scripts`` with the script name in the detail).
- ``status``: ``start``, ``ok``, ``fail`` or ``info`` (progress inside a stage).
- ``detail``: free text to the end of the line (failure reason, update pass counts...).

A marker may be preceded by other output on the same line (the serial port is shared with
cloudbase-init's and Windows' own logging), so it is searched anywhere in a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "OSBUILD"
NONCE_LENGTH = 32


class Status(StrEnum):
    START = "start"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


# Every stage in the order a build passes through them. `winpe` and `specialize` are
# written by cmd from the answer file; the rest by the first-logon PowerShell driver.
# `sysprep:start` is the last marker: the guest powers off after it.
STAGES: tuple[str, ...] = (
    "winpe",
    "specialize",
    "firstlogon",
    "virtio",
    "cloudbaseinit",
    "updates",
    "scripts",
    "cleanup",
    "sysprep",
)

# Stages of the first-logon driver, which the config ISO's plan lists in run order.
FIRSTLOGON_STAGES: tuple[str, ...] = STAGES[3:]

_MARKER_RE = re.compile(
    PREFIX
    + r":(?P<nonce>[0-9a-f]{32}):(?P<stage>[a-z][a-z0-9_-]{0,31}):"
    + r"(?P<status>start|ok|fail|info)(?::(?P<detail>[^\r\n]*))?"
)


@dataclass(frozen=True, slots=True)
class Marker:
    stage: str
    status: Status
    detail: str = ""

    def render(self, nonce: str) -> str:
        """The marker line as the guest writes it."""
        line = f"{PREFIX}:{nonce}:{self.stage}:{self.status.value}"
        if self.detail:
            line += ":" + sanitize_detail(self.detail)
        return line


def sanitize_detail(text: str) -> str:
    """A detail is one line of printable text; the console API strips control chars anyway."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def parse_line(line: str, nonce: str) -> Marker | None:
    """The marker in ``line`` carrying ``nonce``, or None (markers of other builds are ignored)."""
    for match in _MARKER_RE.finditer(line):
        if match.group("nonce") != nonce:
            continue
        return Marker(
            stage=match.group("stage"),
            status=Status(match.group("status")),
            detail=(match.group("detail") or "").strip(),
        )
    return None


def parse_lines(lines: list[str] | tuple[str, ...], nonce: str) -> list[Marker]:
    """All markers of this build in ``lines``, in order."""
    found = []
    for line in lines:
        marker = parse_line(line, nonce)
        if marker is not None:
            found.append(marker)
    return found
