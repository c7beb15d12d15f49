"""A console transcript as the report shows it: markers, boots and failure lines told apart."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osbuild import markers
from osbuild.pipeline.events import EventName

# The page stays small enough for a browser: a long transcript shows its end (where the
# build finished or failed); the file beside the report has it all.
MAX_LINES = 4000

# Firmware banners: each is a (re)boot of the machine (SeaBIOS; OVMF starting a loader).
_BOOT = re.compile(r"^(SeaBIOS \(version|BdsDxe: starting )")
# Notes osbuild itself writes into a transcript (lines lost between two polls...).
_NOTE = re.compile(r"^\[osbuild: .*\]$")
# How failure reasons quote console lines (watch_install's StallTimeout).
_QUOTED = "  | "


@dataclass(frozen=True)
class ConsoleLine:
    number: int
    text: str
    kind: str  # plain, marker, fail, boot, gap
    failure: bool = False  # quoted by the failure reason
    label: str = ""  # the marker's stage and status, or "boot"
    marker: tuple[str, str, str] | None = None  # stage, status, detail


@dataclass
class ConsoleView:
    title: str
    path: str
    lines: list[ConsoleLine] = field(default_factory=list)
    omitted: int = 0
    missing: str | None = None  # why there is no transcript
    boots: int = 0
    markers: int = 0


def classify(number: int, line: str, quoted: set[str]) -> ConsoleLine:
    failure = line.strip() in quoted
    # Any build's marker: the page highlights it even without the build's nonce.
    marker = markers.find_any(line)
    if marker is not None:
        status = marker.status.value
        kind = "fail" if status == "fail" else "marker"
        return ConsoleLine(number, line, kind, failure or status == "fail",
                           f"{marker.stage} {status}", (marker.stage, status, marker.detail))
    if _BOOT.search(line):
        return ConsoleLine(number, line, "boot", failure, "boot")
    if _NOTE.match(line):
        return ConsoleLine(number, line, "gap", failure)
    return ConsoleLine(number, line, "plain", failure)


def _quoted_lines(reason: list[str]) -> set[str]:
    return {line[len(_QUOTED):].strip() for line in reason if line.startswith(_QUOTED)} - {""}


def read_console(report_dir: Path, report: dict[str, Any], name: str, title: str, *,
                 failure_lines: list[str]) -> ConsoleView | None:
    """The transcript ``name`` beside the report; None for a boot test that never ran."""
    path = report_dir / name
    if name == "console.log" and not path.is_file():
        recorded = (report.get("console") or {}).get("transcript")
        if recorded and Path(recorded).is_file():
            path = Path(recorded)
    view = ConsoleView(title=title, path=str(path))
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if name != "console.log" or _kind(report) == "verify":
            return None  # a boot test that never ran; `images verify` has no builder
        if not _booted(report):
            view.missing = "no console transcript: the builder never booted"
        elif not _watched(report):
            # No valid host, a boot timeout: the transcript is started by the install step.
            view.missing = ("no console transcript: the build stopped before its install "
                            "step read the builder's console")
        else:
            view.missing = f"the transcript {path} is gone"
        return view
    except OSError as exc:
        view.missing = f"the transcript {path} cannot be read: {exc.strerror or exc}"
        return view
    quoted = _quoted_lines(failure_lines)
    lines = text.splitlines()
    view.omitted = max(len(lines) - MAX_LINES, 0)
    for number, line in enumerate(lines[view.omitted:], start=view.omitted + 1):
        entry = classify(number, line, quoted)
        view.lines.append(entry)
    view.boots = sum(1 for line in view.lines if line.kind == "boot")
    view.markers = sum(1 for line in view.lines if line.kind in ("marker", "fail"))
    return view


def _booted(report: dict[str, Any]) -> bool:
    return any(r.get("kind") == "server" for r in report.get("resources") or [])


def _watched(report: dict[str, Any]) -> bool:
    """Whether the install step started (it writes the transcript); a report without a
    timeline (an older osbuild's) is taken to have."""
    timeline = report.get("timeline")
    if not timeline:
        return True
    return any(isinstance(e, dict) and e.get("event") == EventName.STEP_STARTED
               and e.get("step") == "install" for e in timeline)


def _kind(report: dict[str, Any]) -> str:
    kind = report.get("kind")
    return str(kind.get("kind") or "") if isinstance(kind, dict) else ""

