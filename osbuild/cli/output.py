"""Rendering build events: a live rich view on a terminal, plain lines otherwise, or JSON."""

from __future__ import annotations

import errno
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from osbuild.cli import jsonout
from osbuild.durations import format_duration
from osbuild.pipeline.events import Event, EventName

# The events that end a build: after one, an error reaching the CLI is not the only word.
_OUTCOMES = frozenset({EventName.BUILD_SUCCEEDED, EventName.BUILD_FAILED,
                       EventName.BUILD_SKIPPED})


class JsonLines:
    """One JSON object per line on stdout: for cron, journald and log shipping."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._closed = False

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                jsonout.print_json(event.as_json(), self._stream,
                                   outcome=event.name in _OUTCOMES)
            except (BrokenPipeError, ValueError):
                # The reader went away (`| head`, a log shipper restarted): the build goes
                # on, and cleans up, without it.
                self._closed = True

    def close(self) -> None:
        pass


@dataclass
class _Row:
    family: str
    build_id: str
    started: float = field(default_factory=time.monotonic)
    step: str = ""
    stage: str = ""
    last: str = ""
    state: str = "running"
    finished: float | None = None
    # The build's own clock at the last event that carried it, and when that event came:
    # at a cloud's pace other than the wall's (the simulator's 600) the wall would disagree
    # with every other duration printed (the summary's "in 2h14m").
    clock: float | None = None
    clock_seen: float = 0.0

    def elapsed(self) -> str:
        now = self.finished or time.monotonic()
        if self.clock is not None:
            return format_duration(self.clock + max(0.0, now - self.clock_seen))
        return format_duration(now - self.started)


_INTERESTING = {EventName.BUILD_REBUILDING, EventName.BUILD_STARTED, EventName.BUILD_RESUMED,
                EventName.STEP_STARTED, EventName.STAGE, EventName.BUILD_SUCCEEDED,
                EventName.BUILD_FAILED, EventName.INFO, EventName.WARNING,
                EventName.CLEANUP_FAILED, EventName.IMAGE_ROTATED}


def rotation_lines(rotated: Sequence[Mapping[str, Any]]) -> list[str]:
    """``rotated: deleted image NAME (ID): beyond the newest 3``: what the promotion's
    rotation did, one line an image (cron mail without --json must say what went)."""
    return [f"rotated: {'deleted' if r.get('action') == 'delete' else 'hid'} image "
            f"{r.get('image_name')} ({r.get('image_id')}): {r.get('reason')}" for r in rotated]


class ViewConsole(Console):
    """rich's Console, except that a closed pipe is the view's business: rich's default
    points stdout at /dev/null and exits the process, with a builder still to delete."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the output was closed")


class HumanView:
    """A live table per build on a terminal; one line per interesting event elsewhere."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or ViewConsole(stderr=True)
        self.rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._live: Live | None = None
        if self.console.is_terminal:
            # get_renderable: every refresh builds the table anew, so the elapsed time
            # ticks between events (a long install stage sends none for many minutes).
            self._live = Live(console=self.console, refresh_per_second=4, transient=False,
                              get_renderable=self._table)
            self._live.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            unheard = event.build_id not in self.rows
            row = self.rows.setdefault(event.build_id, _Row(event.family, event.build_id))
            if event.elapsed is not None:
                row.clock, row.clock_seen = event.elapsed, time.monotonic()
            fields = event.fields
            if event.name == EventName.STEP_STARTED:
                row.step = fields["step"]
            elif event.name == EventName.STAGE:
                row.stage = fields["stage"]
                row.last = f"{fields['stage']}:{fields['status']}"
                if fields.get("detail"):
                    row.last += f" {fields['detail']}"
            elif event.name == EventName.BUILD_SUCCEEDED:
                row.state, row.finished = "succeeded", time.monotonic()
                row.last = f"image {fields.get('image_name')}"
            elif event.name == EventName.BUILD_FAILED:
                row.state, row.finished = "failed", time.monotonic()
                row.last = str(fields.get("reason", ""))
            if self._live is not None:
                self._live.refresh()
            elif event.name in _INTERESTING and not self._closed and not (
                    unheard and event.name == EventName.BUILD_FAILED):
                # (A build that failed before its start, refused with its run, is told by
                # the error lines or the summary that follow: one line each, not two.)
                # One event, one line: cron mail, journald and grep must not see it wrapped
                # at the 80 columns rich assumes when stderr is no terminal.
                try:
                    self.console.print(self._line(event, row), highlight=False, markup=False,
                                       soft_wrap=True)
                except BrokenPipeError:
                    # `2>&1 | head`, a log shipper gone: the build goes on without its lines.
                    self._closed = True

    def _line(self, event: Event, row: _Row) -> str:
        f = event.fields
        what = {
            EventName.BUILD_REBUILDING: f"rebuilding: {f.get('reason')}",
            EventName.BUILD_STARTED: _started(f),
            EventName.BUILD_RESUMED: _started(f, resumed=True),
            EventName.STEP_STARTED: f"step {f.get('step')}",
            EventName.STAGE: f"stage {f.get('stage')} {f.get('status')}"
                             + (f": {f['detail']}" if f.get("detail") else ""),
            EventName.BUILD_SUCCEEDED: f"succeeded: image {f.get('image_name')} "
                                       f"({f.get('image_id')})" + _refreshed(f),
            EventName.BUILD_FAILED: f"failed: {f.get('reason')}",
            EventName.INFO: f"{f.get('message')}",
            EventName.WARNING: f"warning: {f.get('message')}",
            EventName.CLEANUP_FAILED: f"cleanup failed: {f.get('kind')} {f.get('id')}: "
                                      f"{f.get('reason')}",
            EventName.IMAGE_ROTATED: rotation_lines([f])[0],
        }[event.name]
        return f"[{row.elapsed()}] {event.family} {event.build_id}: {what}"

    def _table(self) -> Table:
        table = Table(expand=False, box=None, pad_edge=False)
        for column in ("family", "build", "elapsed", "step", "stage", "state", "last"):
            table.add_column(column, no_wrap=column != "last", overflow="fold")
        for row in list(self.rows.values()):  # the refresh thread reads while events add
            style = {"succeeded": "green", "failed": "red"}.get(row.state, "")
            table.add_row(row.family, row.build_id, row.elapsed(), row.step, row.stage,
                          row.state, row.last, style=style)
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()


def _refreshed(fields: dict[str, object]) -> str:
    """How a refresh's success line names its parent (a full build's says nothing more)."""
    if fields.get("kind") != "refresh":
        return ""
    generation = fields.get("generation")
    return (f", a refresh of {fields.get('parent_image_id')}"
            + (f" (generation {generation})" if generation is not None else ""))


def _started(fields: dict[str, object], *, resumed: bool = False) -> str:
    """What a run is, as its first line says it: which kind, from which image, and why."""
    kind, parent = fields.get("kind"), fields.get("parent_image_id")
    if kind == "verify":
        what = "boot test"
    elif kind == "refresh":
        what = f"refresh of image {parent}" if parent else "refresh"
    else:
        what = "full build"
    reason = fields.get("reason")
    return f"{what} {'resumed' if resumed else 'started'}" + (f": {reason}" if reason else "")


@contextmanager
def event_view(*, json_output: bool) -> Iterator[JsonLines | HumanView]:
    """The listener that renders a command's build events, closed when the command is done."""
    view: JsonLines | HumanView = JsonLines() if json_output else HumanView()
    try:
        yield view
    finally:
        view.close()


def warn_unreadable_states(unreadable: dict[str, str]) -> None:
    """One stderr line per state file `status` or `gc` skipped (their --json says it in the
    document instead)."""
    for path, why in unreadable.items():
        print(f"osbuild: warning: skipped unreadable state file {path}: {why}", file=sys.stderr)
