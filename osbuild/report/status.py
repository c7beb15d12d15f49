"""The fleet at a glance: per image family and cloud, what is current, what was built, what
is left over. Reads the state folder and the cloud; changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild.cloud.clock import Clock, session_clock
from osbuild.cloud.connect import Connection
from osbuild.durations import format_duration
from osbuild.images.family import (
    FamilyImage,
    current_of,
    from_glance,
    glance_families,
    sort_newest_first,
)
from osbuild.unattended import gc
from osbuild.unattended.lock import ActiveBuilder, active_builders
from osbuild.unattended.process import osbuild_alive
from osbuild.unattended.state import BuildState, BuildStatus, StateStore

# How many of a family's last builds the trend shows.
TREND_BUILDS = 10
# Leftovers whose build left no state here: their family is unknown.
NO_STATE = "(no local state)"


@dataclass(frozen=True)
class LastBuild:
    build_id: str
    status: str
    duration: float | None  # cloud seconds, from its report (else its state's span)
    reason: str | None
    finished_at: datetime | None
    # A build whose state says running: the step it is in (or was in when its osbuild died).
    step: str | None = None
    died: bool = False
    kind: str = "full"  # or refresh

    @property
    def shown(self) -> str:
        """Its status as the table's first line says it: "refresh failed in 35s"."""
        done = self.progress or (self.status if self.duration is None
                                 else f"{self.status} in {format_duration(max(self.duration, 0))}")
        return f"refresh {done}" if self.kind == "refresh" else done

    @property
    def where(self) -> str:
        return f"in step {self.step}" if self.step else "before its first step"

    @property
    def progress(self) -> str | None:
        """What a running build shows instead of a duration ("died in step install");
        None for a finished build."""
        if self.status != BuildStatus.RUNNING:
            return None
        return f"{'died' if self.died else 'running'} {self.where}"

    def to_dict(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "result": self.status,
                "duration_seconds": self.duration, "reason": self.reason,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "step": self.step, "died": self.died, "kind": self.kind}


@dataclass
class FamilyStatus:
    family: str
    cloud: str
    current: FamilyImage | None = None
    next_image: FamilyImage | None = None
    last_build: LastBuild | None = None
    durations: list[float] = field(default_factory=list)  # oldest first
    durations_kind: str | None = None  # of those builds: full or refresh
    leftovers: list[gc.Resource] = field(default_factory=list)
    # A dead build's resources that gc keeps for `osbuild resume` (younger than its
    # --older-than): not leftovers yet, but in the cloud ("none" read as nothing there).
    kept_for_resume: list[gc.Resource] = field(default_factory=list)
    # Builds of the family running now that this state folder does not know: another
    # host's (a builder or family claim with a fresh heartbeat). Its builds here show as the
    # last build.
    elsewhere: list[ActiveBuilder] = field(default_factory=list)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "family": self.family, "cloud": self.cloud,
            "current": self.current.to_dict(now) if self.current else None,
            "next": self.next_image.to_dict(now) if self.next_image else None,
            "last_build": self.last_build.to_dict() if self.last_build else None,
            "durations_seconds": self.durations,
            "durations_kind": self.durations_kind if self.durations else None,
            "leftovers": [{"kind": r.kind, "id": r.id, "name": r.name,
                           "build_id": r.build_id, "age_seconds": round(r.age_seconds)}
                          for r in self.leftovers],
            "kept_for_resume": [{"kind": r.kind, "id": r.id, "name": r.name,
                                 "build_id": r.build_id, "age_seconds": round(r.age_seconds)}
                                for r in self.kept_for_resume],
            "building_elsewhere": [
                # Past its builder (capture, boot test, promotion) only its claim is left.
                {"build_id": b.build_id, "builder": b.name if b.server_id else None,
                 "server_id": b.server_id or None, "claim_id": b.claim_id,
                 "heartbeat": b.heartbeat.isoformat(timespec="seconds")}
                for b in self.elsewhere],
        }


def next_in_line(images: list[FamilyImage], current: FamilyImage | None) -> FamilyImage | None:
    """The newest image that is not current and newer than the current one (any image when
    the family has no current one): the one a promotion would pick up next."""
    for image in images:  # newest first
        if image.current or image.rolled_back_at:
            continue  # an image rolled back from is out of the line until promoted again
        if current is None or image.version > current.version:
            return image
    return None


def _report(state: BuildState) -> dict[str, Any]:
    if not state.log_dir:
        return {}
    try:
        report = json.loads((Path(state.log_dir) / state.build_id / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _report_duration(state: BuildState, report: dict[str, Any] | None = None) -> float | None:
    try:
        return float((report if report is not None else _report(state))["duration_seconds"])
    except (KeyError, TypeError, ValueError):
        return None


def _report_kind(report: dict[str, Any]) -> str:
    """full or refresh, as a build's report says (a report from before refreshes: full)."""
    kind = report.get("kind")
    return str(kind.get("kind") or "full") if isinstance(kind, dict) else "full"


def last_build(state: BuildState, clock: Clock | None = None) -> LastBuild:
    """``clock``: the build's cloud's, to count a build with no report (one gc retired) in
    the cloud seconds every report counts in."""
    duration = _report_duration(state)
    if duration is None and state.is_finished:
        duration = (clock or Clock()).between(state.started_at, state.updated_at)
    reason = state.error
    died = state.status is BuildStatus.RUNNING and osbuild_alive(state) is False
    if died:
        # Its state still says running (a SIGKILL, a reboot): say what the operator can do.
        reason = (f"its osbuild (pid {state.pid}) is gone: osbuild resume {state.build_id}, "
                  "or osbuild gc --older-than 0 to start over")
    return LastBuild(state.build_id, str(state.status), duration, reason,
                     state.updated_at if state.is_finished else None,
                     step=None if state.is_finished else state.step, died=died,
                     kind="refresh" if state.is_refresh else "full")


def made_current_since(row: FamilyStatus) -> None:
    """A failed build whose kept image is current now (`osbuild images promote` after a
    failed promotion): its reason told to promote it, which reads wrong once done."""
    last, current = row.last_build, row.current
    if (last is None or last.status != "failed" or current is None
            or current.build_id != last.build_id):
        return
    row.last_build = replace(last, reason=(
        f"its image {current.id} has been made current since; it had failed with: "
        f"{last.reason or 'no reason recorded'}"))


def family_rows(cloud: str, images: dict[str, list[FamilyImage]], states: list[BuildState],
                leftovers: list[gc.Resource],
                live: list[ActiveBuilder] | None = None,
                clock: Clock | None = None,
                kept_for_resume: list[gc.Resource] | None = None) -> list[FamilyStatus]:
    """One row per family known to Glance, to the state folder or building now (``live``:
    builders with a fresh heartbeat), for one cloud (``clock``: its clock)."""
    by_build = {s.build_id: s.family for s in states}
    elsewhere = [b for b in live or [] if b.family and b.build_id not in by_build]
    rows: dict[str, FamilyStatus] = {}
    for family in sorted(set(images) | set(by_build.values())
                         | {b.family for b in elsewhere}):
        members = sort_newest_first(images.get(family, []))
        current = current_of(members)
        row = FamilyStatus(family, cloud, current, next_in_line(members, current),
                           elsewhere=[b for b in elsewhere if b.family == family])
        builds = sorted((s for s in states if s.family == family),
                        key=lambda s: (s.started_at, s.build_id))
        if builds:
            row.last_build = last_build(builds[-1], clock)
            made_current_since(row)
        # The trend answers "are builds getting slower?": what the last successful builds
        # took, as their reports measured it. A failed or interrupted build's time says how
        # far it got (seconds, when Ctrl-C came at the claim), and the last build column
        # shows it. Only builds of the newest one's kind: a refresh takes a fraction of a
        # full build, and a mixed line would jump with every full build between refreshes.
        trend: list[float | None] = []  # None: a report without a duration
        for state in reversed(builds):  # newest first, each report read once
            if state.status is not BuildStatus.SUCCEEDED:
                continue
            report = _report(state)
            kind = _report_kind(report)
            if row.durations_kind is None:
                row.durations_kind = kind
            if kind == row.durations_kind:
                trend.append(_report_duration(state, report))
                if len(trend) == TREND_BUILDS:
                    break
        row.durations = [round(d, 1) for d in reversed(trend) if d is not None]
        rows[family] = row
    for resource in leftovers:
        family = by_build.get(resource.build_id, NO_STATE)
        rows.setdefault(family, FamilyStatus(family, cloud)).leftovers.append(resource)
    for resource in kept_for_resume or []:
        family = by_build.get(resource.build_id, NO_STATE)
        rows.setdefault(family, FamilyStatus(family, cloud)).kept_for_resume.append(resource)
    return list(rows.values())


def cloud_status(conn: Connection, cloud: str, store: StateStore,
                 now: datetime | None = None) -> list[FamilyStatus]:
    """Read-only: Glance listings, Nova's builders, gc's dry run, the state files."""
    now = now or datetime.now(UTC)
    images = {family: [from_glance(i) for i in found]
              for family, found in glance_families(conn).items()}
    swept = gc.collect(conn, dry_run=True, store=store, now=now)
    return family_rows(cloud, images, store.list(cloud=cloud), swept.removed,
                       active_builders(conn, now=now), session_clock(conn),
                       kept_for_resume=[k.resource for k in swept.kept
                                        if k.kept_for == "resume"])
