"""A local transcript of the Nova console log, stitched together from tail polls.

Nova's console API only returns the last ``length`` lines (after libvirt's 100 KiB cap) and
has no offset. Each poll therefore overlaps the transcript; the overlap is found by
matching the poll's head against the transcript's tail. When a poll does not overlap at
all, more scrolled past than one poll holds: the watcher asks again for more lines. When
even the whole log does not overlap, lines were lost (or QEMU restarted and truncated the
log); a gap note is recorded and the poll appended.

Terminal control sequences (the firmware's and GRUB's colours and cursor moves) are taken
out before stitching, so the transcript, the markers and the report see plain text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

GAP_NOTE = "[osbuild: console lines were lost between two polls]"

# Whole ECMA-48 sequences: CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL or
# ESC \\), and ESC with intermediates and a final (ESC ( B, ESC 7, ESC c...). None spans
# a line.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI
                     r"|\][^\x07\x1b\n]*(?:\x07|\x1b\\)"  # OSC
                     r"|[ -/]*[0-Z\\^-~])")  # the rest (not ESC [ or ESC ] cut short)
# A sequence the poll cut off: it is in the unterminated last line, which the next poll
# brings again whole.
_CUT_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*\x1b?|[ -/]*)\Z")
# What Nova leaves of CSI sequences: its console API strips ESC with the other control
# characters (nova/api/openstack/compute/console_output.py), so EDK2's colour change
# "\x1b[0m\x1b[37m\x1b[40m" arrives as "[0m[37m[40m". A run of such remnants is taken
# out when it is more than one or carries parameters: "[KB5034441]" stays.
_REMNANTS = re.compile(r"(?:\[\??[0-9;]*[HJKhlm])+")
_REMNANT = re.compile(r"\[\??[0-9;]*[HJKhlm]")
# Nova's own stripping, for clouds whose console passes them through.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")


def plain_text(output: str) -> str:
    """Console output without terminal control sequences and control characters."""
    text = _ESCAPE.sub("", _CUT_ESCAPE.sub("", output))
    text = _CONTROL.sub("", text)
    return _REMNANTS.sub(_drop_remnants, text)


def _drop_remnants(match: re.Match[str]) -> str:
    run = match.group()
    if len(_REMNANT.findall(run)) > 1 or any(ch.isdigit() or ch == "?" for ch in run):
        return ""
    return run


@dataclass
class StitchResult:
    new_lines: list[str]
    overlapped: bool  # False: no overlap found (the caller may ask for more lines)


@dataclass
class Transcript:
    """Complete lines seen so far; the unterminated last line is held back until complete."""

    lines: list[str] = field(default_factory=list)
    pending: str = ""
    sink: TextIO | None = None
    # How many of the transcript's last lines are compared against a poll; bounded so a
    # long build's stitching stays cheap.
    window: int = 4000
    # Where the console log as Nova now holds it starts in `lines` (after a gap note).
    log_start: int = 0
    # What the sink gets of each line (the build's secrets taken out); stitching compares
    # the lines as the console shows them.
    redact: Callable[[str], str] = str

    @classmethod
    def to_file(cls, path: Path, *, redact: Callable[[str], str] = str) -> Transcript:
        return cls(sink=path.open("a", encoding="utf-8"), redact=redact)

    def close(self) -> None:
        if self.sink is not None:
            if self.pending:
                self.sink.write(self.redact(self.pending) + "\n")
            self.sink.close()
            self.sink = None

    def stitch(self, output: str, *, complete_log: bool) -> StitchResult:
        """Merge one poll's text. ``complete_log``: the poll returned the whole log."""
        polled, pending = _split(plain_text(output))
        if not polled:
            self.pending = pending
            return StitchResult([], True)
        if not self.lines:
            return self._append(polled, pending, overlapped=True)
        current = self.lines[self.log_start :]
        if complete_log and polled[: len(current)] == current:
            # The whole log since it (re)started: what we have is exactly its head.
            return self._append(polled[len(current) :], pending, overlapped=True)
        known = self.lines[-self.window :]
        overlaps = _overlaps(known, polled)
        if not overlaps and complete_log and len(polled) > 1:
            # libvirt keeps the log's last 100 KiB, so a whole-log poll may start mid-line:
            # that fragment matches nothing, the lines after it do.
            overlaps = [k + 1 for k in _overlaps(known, polled[1:])]
        if len(overlaps) == 1 or (overlaps and complete_log):
            return self._append(polled[overlaps[0] :], pending, overlapped=True)
        if not complete_log:
            # No overlap, or an ambiguous one (the poll starts inside a run of identical
            # lines): only a longer poll can tell how many lines are new.
            return StitchResult([], False)
        if _is_prefix(polled, self.lines):
            # The log restarted (QEMU restart truncates it) with identical lines so far.
            return StitchResult([], True)
        self._write([GAP_NOTE])
        self.lines.append(GAP_NOTE)
        self.log_start = len(self.lines)
        return self._append(polled, pending, overlapped=False)

    def _append(self, new: list[str], pending: str, *, overlapped: bool) -> StitchResult:
        self.lines.extend(new)
        self.pending = pending
        self._write(new)
        return StitchResult(new, overlapped)

    def _write(self, lines: list[str]) -> None:
        if self.sink is not None and lines:
            self.sink.write("".join(self.redact(line) + "\n" for line in lines))
            self.sink.flush()

    def tail(self, count: int) -> list[str]:
        out = self.lines[-count:]
        return [*out, self.pending] if self.pending else out


def _split(output: str) -> tuple[list[str], str]:
    """Complete lines and the unterminated remainder."""
    if not output:
        return [], ""
    parts = output.split("\n")
    return parts[:-1], parts[-1]


def _overlaps(known: list[str], polled: list[str]) -> list[int]:
    """Every k, largest first, such that polled[:k] equals the last k lines of ``known``."""
    limit = min(len(known), len(polled))
    first = polled[0]
    # Only positions where the poll's first line occurs can start an overlap.
    return [k for k in range(limit, 0, -1)
            if known[-k] == first and known[-k:] == polled[:k]]


def _is_prefix(polled: list[str], known: list[str]) -> bool:
    return len(polled) <= len(known) and known[: len(polled)] == polled
