"""Simulated time: real elapsed seconds scaled by a speed factor, plus explicit jumps."""

from __future__ import annotations

import bisect
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
        # Every jump: the simulated second it ended on, the skipped total after it, and the
        # real elapsed seconds it happened at (for mapping simulated instants back to real).
        self._jump_ends: list[float] = []
        self._jumps: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now()

    def _now(self) -> float:
        return (time.monotonic() - self._start_real) * self.speed + self._skipped

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (tests use it instead of sleeping)."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        with self._lock:
            real = time.monotonic() - self._start_real
            self._skipped += seconds
            self._jump_ends.append(real * self.speed + self._skipped)
            self._jumps.append((self._skipped, real))

    def real_seconds(self, simulated: float) -> float:
        """How long `simulated` seconds last in real time at this speed."""
        return simulated / self.speed

    def wall(self, at: float | None = None) -> datetime:
        """The simulated wall-clock time at simulated second `at` (default: now)."""
        return self._start_wall + timedelta(seconds=self.now() if at is None else at)

    def real_wall(self, at: float | None = None) -> datetime:
        """The real wall-clock time at which simulated time reached `at` (default: now);
        within a jump, the time of the jump."""
        with self._lock:
            at = self._now() if at is None else at
            index = bisect.bisect_left(self._jump_ends, at)
            skipped, jumped_at = self._jumps[index - 1] if index else (0.0, 0.0)
            real = max((at - skipped) / self.speed, jumped_at)
            if index < len(self._jumps):  # `at` may lie inside the next jump
                real = min(real, self._jumps[index][1])
        return self._start_wall + timedelta(seconds=real)

    def timestamp(self, at: float | None = None) -> str:
        """What the services print for simulated second `at`: ISO 8601 without microseconds,
        as Nova and Cinder print it, in real wall-clock time. Simulated wall time runs
        `speed` times faster, so a client computing an age (its clock minus created_at)
        would find everything created in its future."""
        return self.real_wall(at).strftime("%Y-%m-%dT%H:%M:%SZ")
