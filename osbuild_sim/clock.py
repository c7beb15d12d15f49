"""Simulated time: real elapsed seconds scaled by a speed factor, plus explicit jumps."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """`now()` is simulated seconds since start (real elapsed * speed + skipped time)."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_real = time.monotonic()
        self._start_wall = datetime.now(UTC)
        self._skipped = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return (time.monotonic() - self._start_real) * self.speed + self._skipped

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (tests use it instead of sleeping)."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        with self._lock:
            self._skipped += seconds

    def real_seconds(self, simulated: float) -> float:
        """How long `simulated` seconds last in real time at this speed."""
        return simulated / self.speed

    def wall(self, at: float | None = None) -> datetime:
        """The simulated wall-clock time at simulated second `at` (default: now)."""
        return self._start_wall + timedelta(seconds=self.now() if at is None else at)

    def timestamp(self, at: float | None = None) -> str:
        """ISO 8601 without microseconds, as Nova and Cinder print it."""
        return self.wall(at).strftime("%Y-%m-%dT%H:%M:%SZ")
