"""The serial-port progress marker grammar, shared by the guest scripts, the watcher and the sim.

A marker is one line on COM1, written by osbuild's own guest scripts:

    OSBUILD:<nonce>:<stage>:<status>[:<detail>]

- ``nonce``: 32 lowercase hex digits, generated per build and read by the guest *at run
  time* from ``osbuild/nonce.txt`` on the config ISO. No script or answer file contains it,
  so a logged or echoed copy of a script can never produce a valid marker.
- ``stage``: a stage of :data:`osbuild.media.stages.GUEST_STAGES` (the user's scripts are
  reported as stage ``scripts`` with the script name in the detail).
- ``status``: ``start``, ``ok``, ``fail`` or ``info`` (progress inside a stage).
- ``detail``: free text to the end of the line (failure reason, update pass counts...), one
  line of at most :data:`DETAIL_MAX` characters.

A marker may be preceded by other output on the same line (the serial port is shared with
cloudbase-init's and Windows' own logging), so it is searched anywhere in a line.

The last markers always arrive (the power-off protocol)
-------------------------------------------------------
With Nova's default pty console the console API answers 404 from the moment the guest's
domain shuts off (before Nova even shows SHUTOFF): whatever the guest printed after the
orchestrator's last poll is lost. So the build's outcome never depends on a marker printed
just before power-off:

1. ``sysprep:start`` is the decisive marker: SHUTOFF after it is a finished install.
2. The guest keeps running for at least :data:`SYSPREP_HOLD` seconds after writing it: the
   first-logon driver runs ``sysprep /generalize /oobe /quit`` (minutes on real Windows),
   checks that Windows is generalized (a failure is a ``sysprep:fail`` marker and the guest
   stays on), waits out what is left of the hold, writes ``sysprep:ok`` and only then powers
   off. ``sysprep:ok`` is the final marker and may be lost to the 404; nothing depends on it.
3. The orchestrator never waits more than :data:`MAX_POLL_INTERVAL` between console polls
   (a third of the hold), so ``sysprep:start`` is read at least twice before power-off
   can remove it.
4. SHUTOFF without ``sysprep:start`` fails the build: the guest powered off before sysprep
   (or outside the protocol), and a false success would publish an image that was never
   generalized. The watcher takes one last look at the console first, for clouds whose log
   survives power-off (``[serial_console] enabled``, other virt drivers).
5. When nobody reads the console (the orchestrator died and ``osbuild resume`` comes after
   the power-off), the console cannot tell. So once sysprep has generalized Windows, the
   guest also posts its ``sysprep:ok`` marker line to Nova's metadata service, where
   instances post their encrypted password (:data:`SYSPREP_ACK_URL`). Nova keeps it in the
   server's system metadata and hands it to the API as ``os-server-password``, power-off or
   not (nova/api/metadata/password.py: one post per server, at most 256 bytes; a second is
   409). A builder whose console is gone is captured when that reads :func:`sysprep_ack`.
   Without a metadata service (config drive only) the post fails, the guest says so in an
   ``info`` marker, and rule 4 stands.
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


# How long (seconds) the guest keeps running after writing `sysprep:start`, and the longest
# the orchestrator waits between two console polls: at least two polls see the marker.
SYSPREP_HOLD = 180.0
MAX_POLL_INTERVAL = SYSPREP_HOLD / 3

# Where an instance posts to Nova's metadata service what `os-server-password` returns: the
# path cloudbase-init posts its encrypted password to (metadata version 2013-04-04, the first
# with it). The builder has no keypair, so nothing else posts there.
SYSPREP_ACK_URL = "http://169.254.169.254/openstack/2013-04-04/password"

# A detail is cut to this length by the guest: a failure quoting a log stays one console line.
DETAIL_MAX = 400

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
            line += ":" + sanitize_detail(self.detail)[:DETAIL_MAX]
        return line


def sanitize_detail(text: str) -> str:
    """A detail is one line of printable text; the console API strips control chars anyway."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def parse_line(line: str, nonce: str) -> Marker | None:
    """The marker in ``line`` carrying ``nonce``, or None (markers of other builds are ignored)."""
    for match in _MARKER_RE.finditer(line):
        if match.group("nonce") == nonce:
            return _marker(match)
    return None


def find_any(line: str) -> Marker | None:
    """The first marker in ``line`` whatever its nonce: what a transcript shows, not what a
    build acts on (that is :func:`parse_line`)."""
    match = _MARKER_RE.search(line)
    return _marker(match) if match else None


def _marker(match: re.Match[str]) -> Marker:
    return Marker(
        stage=match.group("stage"),
        status=Status(match.group("status")),
        detail=(match.group("detail") or "").strip(),
    )


def parse_lines(lines: list[str] | tuple[str, ...], nonce: str) -> list[Marker]:
    """All markers of this build in ``lines``, in order."""
    found = []
    for line in lines:
        marker = parse_line(line, nonce)
        if marker is not None:
            found.append(marker)
    return found


def sysprep_ack(nonce: str) -> str:
    """What the guest posts to :data:`SYSPREP_ACK_URL` once sysprep has generalized Windows:
    its ``sysprep:ok`` marker line (rule 5 of the power-off protocol)."""
    return Marker("sysprep", Status.OK).render(nonce)
