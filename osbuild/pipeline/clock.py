"""Cloud time: real time, or faster for a simulated cloud that runs `time_scale` times faster.

Every duration in osbuild (timeouts, poll intervals, back-offs) is written in cloud seconds;
against the simulated cloud at speed S the orchestrator runs S times faster with it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from osbuild.errors import Interrupted


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

    @classmethod
    def after(cls, clock: Clock, seconds: float, what: str) -> Deadline:
        return cls(clock, clock.now() + seconds, what, seconds)

    def remaining(self) -> float:
        return self.at - self.clock.now()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0
