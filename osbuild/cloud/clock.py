"""Cloud time: the pace of a cloud session, read from its clouds.yaml entry.

Every duration in osbuild (timeouts, poll intervals, back-offs) is written in cloud seconds.
A real cloud runs at real time; a cloud whose clouds.yaml entry says ``osbuild_time_scale: S``
(the simulated cloud writes it) runs S times faster, and the orchestrator's clock with it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from osbuild.errors import Interrupted

# The clouds.yaml key (openstacksdk keeps unknown keys in ``conn.config.config``) that gives
# a cloud's pace: cloud seconds per real second.
PACE_KEY = "osbuild_time_scale"


@dataclass
class CancelToken:
    """Set by the CLI's SIGINT/SIGTERM handler; every wait watches it."""

    event: threading.Event = field(default_factory=threading.Event)
    signal_name: str = "SIGINT"

    def cancel(self, signal_name: str = "SIGINT") -> None:
        self.signal_name = signal_name
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Interrupted(self.signal_name)


@dataclass(frozen=True)
class Clock:
    scale: float = 1.0

    def now(self) -> float:
        """Monotonic cloud seconds."""
        return time.monotonic() * self.scale

    def since(self, moment: datetime) -> float:
        """Cloud seconds from a wall-clock ``moment`` (a state file's, UTC when naive) to now:
        how to go on counting a time that another process started."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return self.between(moment, datetime.now(UTC))

    def between(self, start: datetime, end: datetime) -> float:
        """Cloud seconds between two wall-clock moments (a state file's start and end)."""
        return max((end - start).total_seconds(), 0.0) * self.scale

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        """Sleep ``seconds`` of cloud time; raises Interrupted as soon as ``cancel`` is set."""
        real = max(seconds / self.scale, 0.0)
        if cancel is None:
            time.sleep(real)
            return
        if cancel.event.wait(real):
            raise Interrupted(cancel.signal_name)


@dataclass(frozen=True)
class Deadline:
    """A point in cloud time, with what it guards for the error message."""

    clock: Clock
    at: float
    what: str
    seconds: float
    # The setting that gave it, named when it passes ("builder.stage_timeouts.boot"): the
    # operator's next question is what to raise.
    setting: str | None = None

    @classmethod
    def after(cls, clock: Clock, seconds: float, what: str, *,
              setting: str | None = None) -> Deadline:
        return cls(clock, clock.now() + seconds, what, seconds, setting)

    def remaining(self) -> float:
        return self.at - self.clock.now()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


def session_clock(conn: Any) -> Clock:
    """The clock of ``conn``'s cloud: real time unless its config sets ``osbuild_time_scale``."""
    config = getattr(getattr(conn, "config", None), "config", None)
    value = config.get(PACE_KEY) if isinstance(config, dict) else None
    return Clock(pace(value) if value is not None else 1.0)


def pace(value: Any) -> float:
    """A pace from clouds.yaml or the command line; ValueError unless a positive number."""
    scale = float(value)
    if not scale > 0 or scale == float("inf"):
        raise ValueError("must be positive")
    return scale
