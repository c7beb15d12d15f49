"""Steps, guest stages and markers of one build on its own time axis, laid out for SVG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from osbuild.durations import format_duration
from osbuild.pipeline.events import EventName

# SVG user units: the label column, then the axis.
LABEL_WIDTH = 120.0
AXIS_WIDTH = 860.0
# Each console line's kind and, for a marker, its stage, status and detail.
ConsoleMarkers = Sequence[tuple[str, tuple[str, str, str] | None]]
_AXIS_STEPS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)


@dataclass
class Bar:
    label: str
    start: float
    end: float
    status: str  # ok, failed, interrupted or running (cut short), skipped
    x: float = 0.0
    width: float = 0.0

    @property
    def duration(self) -> float:
        return max(self.end - self.start, 0.0)


@dataclass
class Tick:
    at: float
    kind: str  # boot, update-pass, reboot, info, fail, warning
    label: str
    x: float = 0.0


@dataclass
class Timeline:
    total: float
    steps: list[Bar] = field(default_factory=list)
    stages: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    axis: list[tuple[float, str]] = field(default_factory=list)  # (x, label)
    notes: list[str] = field(default_factory=list)

    @property
    def boots(self) -> int:
        return sum(1 for t in self.ticks if t.kind == "boot")

    @property
    def update_passes(self) -> int:
        return sum(1 for t in self.ticks if t.kind == "update-pass")


def _steps_from_events(events: list[dict[str, Any]], total: float, ended: str | None
                       ) -> list[Bar]:
    """``ended``: what the step under way came to when the build stopped (failed,
    interrupted), or None for a report of a build still running."""
    bars: list[Bar] = []
    open_bar: Bar | None = None
    for entry in events:
        if entry.get("event") == EventName.STEP_STARTED:
            open_bar = Bar(str(entry.get("step")), float(entry.get("at", 0)), total, "running")
            bars.append(open_bar)
        elif entry.get("event") == EventName.STEP_FINISHED and open_bar is not None:
            open_bar.end, open_bar.status = float(entry.get("at", open_bar.start)), "ok"
            open_bar = None
        elif entry.get("event") == EventName.STEP_FAILED and open_bar is not None:
            open_bar.end = float(entry.get("at", open_bar.start))
            open_bar.status = str(entry.get("status") or ended or "failed")
            open_bar = None
        elif open_bar is not None and entry.get("during") == "cleanup":
            # The runner cleans up once a step failed: the unfinished step ended here.
            open_bar.end = float(entry.get("at", open_bar.end))
            open_bar = None
    for bar in bars:
        if bar.status == "running":
            bar.status = ended or "running"
    return bars


def _steps_from_timings(timings: dict[str, float]) -> list[Bar]:
    bars, at = [], 0.0
    for name, seconds in timings.items():
        bars.append(Bar(name, at, at + float(seconds), "ok"))
        at += float(seconds)
    return bars


def _stages(stages: list[dict[str, Any]], total: float) -> list[Bar]:
    bars = []
    for stage in stages:
        start = float(stage.get("started") or 0.0)
        end = stage.get("finished")
        status = str(stage.get("status") or "running")
        label = str(stage.get("stage"))
        if stage.get("detail"):
            label += f": {stage['detail']}"
        bars.append(Bar(label, start, float(end) if end is not None else total,
                        "ok" if status == "ok" else "failed" if status == "failed" else status))
    return bars


_MILESTONES = {EventName.VERIFY_PASSED: "boot test passed",
               EventName.VERIFY_FAILED: "boot test failed",
               EventName.VERIFY_SKIPPED: "boot test skipped",
               EventName.IMAGE_PROMOTED: "image promoted"}


def tick_kind(status: str, detail: str) -> str:
    text = detail.lower()
    if status == "fail":
        return "fail"
    if "reboot" in text or "restart" in text:
        return "reboot"
    if text.startswith("pass "):
        return "update-pass"
    return "info"


def _ticks(events: list[dict[str, Any]]) -> list[Tick]:
    ticks = []
    for entry in events:
        at = float(entry.get("at", 0.0))
        if entry.get("event") == EventName.STAGE and entry.get("status") in ("info", "fail"):
            detail = str(entry.get("detail") or "")
            kind = tick_kind(str(entry["status"]), detail)
            ticks.append(Tick(at, kind, f"{entry.get('stage')}: {detail}".rstrip(": ")))
        elif entry.get("event") in (EventName.WARNING, EventName.INFO):
            ticks.append(Tick(at, str(entry["event"]), str(entry.get("message") or "")))
        elif entry.get("event") == EventName.IMAGE_ROTATED:
            done = "deleted" if entry.get("action") == "delete" else "hidden"
            ticks.append(Tick(at, "info", f"image {done} by rotation: {entry.get('image_name')} "
                                          f"({entry.get('image_id')}): {entry.get('reason')}"))
        elif entry.get("event") in _MILESTONES:
            what = _MILESTONES[EventName(entry["event"])]
            reason = entry.get("reason") or entry.get("image_name") or ""
            ticks.append(Tick(at, "fail" if entry["event"] == EventName.VERIFY_FAILED else "info",
                              f"{what}: {reason}" if reason else what))
    return ticks


def boot_ticks(events: list[dict[str, Any]], console: ConsoleMarkers) -> list[Tick]:
    """The builder's firmware boots, from its transcript: ``console`` is each line's kind
    and marker. A line has no time of its own; a boot is placed at the first marker after
    it (the watcher saw both in the same poll or the boot earlier), so reboots between
    update passes land where they happened."""
    seen = [e for e in events if e.get("event") == EventName.STAGE]
    position, waiting, ticks = 0, 0, []
    for kind, marker in console:
        if kind == "boot":
            waiting += 1
            continue
        if marker is None:
            continue
        for index in range(position, len(seen)):
            entry = seen[index]
            if (entry.get("stage"), entry.get("status"),
                    str(entry.get("detail") or "")) == marker:
                position = index + 1
                ticks += [Tick(float(entry.get("at", 0.0)), "boot",
                               f"firmware boot, before {marker[0]} {marker[1]}")] * waiting
                break
        # A marker the timeline lacks (another build's, a report cut short): the boots
        # before it have no time to go by.
        waiting = 0
    return ticks


def _axis_step(total: float) -> int:
    return next((s for s in _AXIS_STEPS if total / s <= 8), _AXIS_STEPS[-1])


def build_timeline(report: dict[str, Any], console: ConsoleMarkers = ()) -> Timeline:
    events = [e for e in report.get("timeline") or [] if isinstance(e, dict)]
    stages = [s for s in report.get("stages") or [] if isinstance(s, dict)]
    latest = max([float(e.get("at", 0)) for e in events]
                 + [float(s.get("finished") or s.get("started") or 0) for s in stages] + [0.0])
    total = max(float(report.get("duration_seconds") or 0.0), latest, 1.0)
    timeline = Timeline(total=total)
    ended = (None if report.get("result") == "succeeded" else "interrupted"
             if report.get("interrupted") else "failed")
    if events:
        timeline.steps = _steps_from_events(events, total, ended)
    elif report.get("step_timings"):
        timeline.steps = _steps_from_timings(report["step_timings"])
        timeline.notes.append("this report has no event timeline (written by an older "
                              "osbuild): steps are laid end to end from their durations")
    else:
        timeline.notes.append("this report records no steps")
    timeline.stages = _stages(stages, total)
    reverify = isinstance(report.get("kind"), dict) and report["kind"].get("kind") == "verify"
    if not stages and not reverify:  # `images verify` has no builder and no guest stages
        timeline.notes.append("no guest stage was reached (no marker on the console)")
    timeline.ticks = sorted([*_ticks(events), *boot_ticks(events, console)],
                            key=lambda t: t.at)
    scale = AXIS_WIDTH / total
    for bar in [*timeline.steps, *timeline.stages]:
        bar.x = round(LABEL_WIDTH + bar.start * scale, 2)
        bar.width = round(max(bar.duration * scale, 1.0), 2)
    for tick in timeline.ticks:
        tick.x = round(LABEL_WIDTH + tick.at * scale, 2)
    step = _axis_step(total)
    timeline.axis = [(round(LABEL_WIDTH + t * scale, 2), format_duration(t) if t else "0")
                     for t in range(0, int(total) + 1, step)]
    return timeline
