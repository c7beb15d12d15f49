"""Prometheus textfile (node_exporter's textfile collector) with the last result per family."""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from osbuild.atomicfile import write_atomic

log = logging.getLogger(__name__)

Result = Literal["success", "failure", "skipped"]

# name -> (type, help); the order is the order in the file.
METRICS: dict[str, tuple[str, str]] = {
    "osbuild_last_run_timestamp_seconds": (
        "gauge",
        "When osbuild last ran for this family and cloud (builds and skips).",
    ),
    "osbuild_last_success_timestamp_seconds": (
        "gauge",
        "When the last successful build of this family and cloud finished.",
    ),
    "osbuild_last_build_timestamp_seconds": (
        "gauge",
        "When the last build (successful or not) of this family and cloud finished.",
    ),
    "osbuild_last_build_duration_seconds": (
        "gauge",
        "Duration of the last build of this family and cloud, in the cloud's time "
        "(a resumed build's from its first start).",
    ),
    "osbuild_last_build_result": (
        "gauge",
        "1 if the last build of this family and cloud succeeded, 0 if it failed.",
    ),
    "osbuild_builds_total": (
        "counter",
        "Builds and skips of this family and cloud recorded in this file, by result.",
    ),
}

_SAMPLE_RE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$"
)
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')

Labels = tuple[tuple[str, str], ...]
_thread_lock = threading.Lock()


@dataclass(frozen=True)
class BuildOutcome:
    family: str
    cloud: str
    result: Result
    duration_seconds: float | None = None  # None for a skip
    finished_at: datetime | None = None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def parse(text: str) -> dict[tuple[str, Labels], float]:
    """Our own samples from an existing file; comments and foreign lines are dropped."""
    samples: dict[tuple[str, Labels], float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_RE.match(line)
        if not match or match["name"] not in METRICS:
            log.debug("metrics file: ignoring line %r", line)
            continue
        labels: list[tuple[str, str]] = []
        raw = match["labels"] or ""
        pos = 0
        while pos < len(raw):
            label = _LABEL_RE.match(raw, pos)
            if not label:
                break
            labels.append((label[1], _unescape(label[2])))
            pos = label.end()
        try:
            samples[(match["name"], tuple(sorted(labels)))] = float(match["value"])
        except ValueError:
            continue
    return samples


def render(samples: dict[tuple[str, Labels], float]) -> str:
    lines = []
    for name, (kind, help_text) in METRICS.items():
        mine = sorted((labels, value) for (n, labels), value in samples.items() if n == name)
        if not mine:
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in mine:
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{body}}} {_format_value(value)}")
    return "\n".join(lines) + "\n"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Concurrent builds (several specs, several clouds) update the same file: serialise the
    # read-merge-write across threads and processes, or one build's result would be lost.
    with _thread_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def record(path: Path | str, outcome: BuildOutcome) -> None:
    """Merge one family's result into the file, keeping every other family's samples."""
    path = Path(path)
    when = (outcome.finished_at or datetime.now(UTC)).timestamp()
    key: Labels = (("cloud", outcome.cloud), ("family", outcome.family))
    with _file_lock(path):
        try:
            samples = parse(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            samples = {}
        samples[("osbuild_last_run_timestamp_seconds", key)] = when
        if outcome.result != "skipped":
            samples[("osbuild_last_build_timestamp_seconds", key)] = when
            succeeded = outcome.result == "success"
            samples[("osbuild_last_build_result", key)] = 1.0 if succeeded else 0.0
            if outcome.duration_seconds is not None:
                samples[("osbuild_last_build_duration_seconds", key)] = outcome.duration_seconds
            if outcome.result == "success":
                samples[("osbuild_last_success_timestamp_seconds", key)] = when
        counter = ("osbuild_builds_total", tuple(sorted((*key, ("result", outcome.result)))))
        samples[counter] = samples.get(counter, 0.0) + 1
        # node_exporter runs as another user: the file must be world-readable.
        write_atomic(path, render(samples).encode(), mode=0o644)
