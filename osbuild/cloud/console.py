"""The builder's and the test server's console log: the one place that polls it.

Nova's os-getConsoleOutput returns the last ``length`` lines and has no offset, so a reader
keeps a :class:`~osbuild.cloud.transcript.Transcript` and stitches each tail into it, asking
again with a larger window when a poll does not place itself after the transcript (more
scrolled by than it held, or its first lines repeat what the transcript ends with, as every
reboot's firmware lines do). Only when the whole log Nova keeps does not reach back are
lines lost: the read says so (``lost``). The API answers 409
while the server has no host yet and 404 when there is no console to read: with libvirt's
default pty console that is from the moment the guest powers off (osbuild/markers.py says
how the build copes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from osbuild.cloud.clock import session_clock
from osbuild.cloud.retry import is_not_found, retrying, status_of
from osbuild.cloud.transcript import Transcript

# Beyond libvirt's 100 KiB cap: "everything there is".
MAX_LINES = 1_000_000


@dataclass(frozen=True)
class ConsoleRead:
    """One read: the new complete lines, whether the console answered, what it cost."""

    new_lines: tuple[str, ...]
    available: bool  # False: 404/409, no console (yet, or any more)
    polls: int = 0
    bytes: int = 0
    # The whole log Nova keeps (``held`` lines) did not reach back to the transcript: what
    # the guest printed in between is lost, or QEMU restarted and began a new log. The
    # transcript marks the gap.
    lost: bool = False
    held: int = 0

    def lost_message(self, transcript: str, missed: str) -> str:
        """The warning for ``lost``: ``missed`` says what that reader looked for in the
        lines, ``transcript`` names the file that marks the gap."""
        return (f"console: lines were lost: the whole log Nova returns ({self.held} lines) "
                f"no longer reaches back to the last line read, so what the guest printed "
                f"in between, {missed} too, was never seen (or QEMU restarted and began a "
                f"new log); {transcript} marks the gap")


def console_output(conn: Connection, server_id: str, length: int, *,
                   cancel: threading.Event | None = None) -> str | None:
    """The last ``length`` lines of the console log, or None while there is none to read."""
    try:
        reply = retrying(conn.compute.get_server_console_output, server_id, length=length,
                         clock=session_clock(conn), cancel=cancel)
    except sdk_exc.HttpException as exc:
        if status_of(exc) == 409 or is_not_found(exc):
            return None
        raise
    return str(reply.get("output", "") if isinstance(reply, dict) else reply or "")


class ConsoleReader:
    """Reads one server's console into ``transcript``, a growing window at a time.

    ``first_lines``: the first window. ``adaptive``: later windows follow what the last
    poll brought (a long build keeps them small); otherwise every poll asks for
    ``first_lines``. ``on_scroll(got, asking)`` hears when a poll of ``got`` lines could
    not be placed after the transcript and a larger window is asked for: routine, nothing
    is lost by it.
    """

    def __init__(self, conn: Connection, server_id: str, transcript: Transcript, *,
                 first_lines: int = 200, adaptive: bool = True,
                 cancel: threading.Event | None = None,
                 on_scroll: Callable[[int, int], None] | None = None) -> None:
        self.conn = conn
        self.server_id = server_id
        self.transcript = transcript
        self.adaptive = adaptive
        self.lines = first_lines
        self.cancel = cancel
        self.on_scroll = on_scroll

    def read(self) -> ConsoleRead:
        length = self.lines
        polls = size = 0
        while True:
            output = console_output(self.conn, self.server_id, length, cancel=self.cancel)
            if output is None:
                return ConsoleRead((), False, polls, size)
            polls += 1
            size += len(output.encode("utf-8", "replace"))
            got = output.count("\n") + (0 if output.endswith("\n") or not output else 1)
            # Nova keeps the last `length` pieces of the log split on "\n"; a log that ends
            # in a newline has an empty last piece, so a full window holds length - 1 lines.
            # The largest ask is the whole log (libvirt keeps its last 100 KiB).
            complete = len(output.split("\n")) < length or length >= MAX_LINES
            result = self.transcript.stitch(output, complete_log=complete)
            if result.overlapped or complete:
                if self.adaptive:
                    # Ask next time for a little more than what arrived this time.
                    self.lines = min(max(40, 2 * len(result.new_lines) + 20), 5000)
                return ConsoleRead(tuple(result.new_lines), True, polls, size,
                                   lost=not result.overlapped, held=got)
            length = min(length * 4, MAX_LINES)
            if self.on_scroll is not None:
                self.on_scroll(got, length)
