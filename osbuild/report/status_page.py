"""The fleet status as a terminal table and as a self-contained HTML page."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from osbuild.durations import format_duration
from osbuild.redact import Redactor, visible
from osbuild.report.pages import render_page
from osbuild.report.status import FamilyStatus
from osbuild.report.trend import span_of, spark_points, sparkline, trend_of
from osbuild.unattended import gc

_STYLE = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}


def _cell(*parts: str, style: str = "") -> Text:
    """Cloud and guest text as plain text: no rich markup, no terminal control characters."""
    redactor = Redactor()
    return Text("\n".join(visible(redactor.guest_text(p)) for p in parts if p), style=style)


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(max(seconds, 0))


def status_table(rows: list[FamilyStatus], *, now: datetime, print_to: TextIO,
                 unreachable: list[str] | None = None) -> None:
    """The table; below it, as on the page, each cloud left out (``unreachable``)."""
    console = Console(file=print_to)
    if not console.is_terminal:
        # Piped or mailed by cron: no terminal width to fit, and grep wants whole names.
        console = Console(file=print_to, width=240)
    try:
        _print_table(console, rows, now)
    finally:
        for line in unreachable or []:
            console.print(f"not shown, unreachable: {line}", markup=False, soft_wrap=True)


def _print_table(console: Console, rows: list[FamilyStatus], now: datetime) -> None:
    if not rows:
        console.print("no image family in Glance or in the state folder", markup=False)
        return
    table = Table(show_lines=True)
    for column in ("family", "cloud", "current", "last build", "next in line", "leftovers",
                   "trend"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # The id too: a family's images can share their name.
        current = (_cell(row.current.name, row.current.id,
                         f"{_dur(row.current.age(now))} old, made by {row.current.made_by_words}")
                   if row.current else _cell("none", style="dim"))
        last = row.last_build
        elsewhere = [f"building on another host: build {other.build_id} (heartbeat "
                     f"{_dur((now - other.heartbeat).total_seconds())} ago)"
                     for other in row.elsewhere]
        if last:
            last_cell = _cell(last.shown,
                              last.build_id, last.reason or "", *elsewhere,
                              style="red" if last.died else _STYLE.get(last.status, ""))
        else:
            last_cell = _cell(*elsewhere, style="cyan") if elsewhere else _cell("-", style="dim")
        following = row.next_image
        next_cell = (_cell(following.name, following.id,
                           ("hidden" if following.hidden else "visible")
                           + f", verify {following.verify}")
                     if following else _cell("-", style="dim"))
        leftovers = _cell(*(f"{r.kind} {r.name or r.id}" for r in row.leftovers)) \
            if row.leftovers else _cell("none", style="dim")
        if row.kept_for_resume:
            leftovers = _cell(*(f"{r.kind} {r.name or r.id}" for r in row.leftovers),
                              *_kept_for_resume(row.kept_for_resume))
        trend = _cell(sparkline(row.durations), span_of(row.durations, _dur),
                      trend_of(row.durations_kind, len(row.durations))) \
            if row.durations else _cell("-", style="dim")
        table.add_row(_cell(row.family), _cell(row.cloud), current, last_cell, next_cell,
                      leftovers, trend)
    console.print(table)


def _kept_for_resume(resources: list[gc.Resource]) -> list[str]:
    """Lines of a narrow cell: the count, then each build (the table wraps wide cells)."""
    return [f"{len(resources)} kept for resume", *sorted({r.build_id for r in resources})]


def render_status_html(rows: list[FamilyStatus], *, clouds: list[str], state_dir: Path,
                       now: datetime, unreachable: list[str] | None = None) -> str:
    return render_page("status.html.j2", Redactor(), rows=rows, clouds=clouds,
                       state_dir=str(state_dir), now=now,
                       generated=now.isoformat(timespec="seconds"), spark=spark_points,
                       trend_of=trend_of,
                       unreachable=unreachable or [])


def write_status_html(path: Path, rows: list[FamilyStatus], *, clouds: list[str],
                      state_dir: Path, now: datetime,
                      unreachable: list[str] | None = None) -> Path:
    path.write_text(render_status_html(rows, clouds=clouds, state_dir=state_dir, now=now,
                                       unreachable=unreachable), encoding="utf-8")
    return path
