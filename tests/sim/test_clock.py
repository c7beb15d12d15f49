"""The simulated clock, and the real wall-clock times the services print for its instants."""

from __future__ import annotations

from datetime import timedelta

import pytest

from osbuild_sim import clock as clock_module
from osbuild_sim.clock import SimClock


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The real monotonic time the clock reads: tests set ``real[0]``."""
    now = [1000.0]
    monkeypatch.setattr(clock_module.time, "monotonic", lambda: now[0])
    return now


def _real_seconds(clock: SimClock, at: float | None = None) -> float:
    return (clock.real_wall(at) - clock.wall(0.0)) / timedelta(seconds=1)


def test_services_print_real_time_while_simulated_time_runs_ahead(real: list[float]) -> None:
    clock = SimClock(speed=1000.0)
    real[0] += 5.0
    assert clock.now() == 5000.0
    assert clock.wall() - clock.wall(0.0) == timedelta(seconds=5000)
    # A client's clock has moved 5 s: an image stamped now must not be in its future.
    assert _real_seconds(clock) == 5.0
    assert _real_seconds(clock, 2500.0) == 2.5


def test_a_jump_maps_to_the_real_moment_it_happened(real: list[float]) -> None:
    clock = SimClock(speed=1.0)
    real[0] += 10.0
    clock.advance(3600.0)  # simulated 10 .. 3610 all happened at real second 10
    real[0] += 20.0
    assert clock.now() == 3630.0
    assert _real_seconds(clock, 5.0) == 5.0
    assert _real_seconds(clock, 10.0) == 10.0
    assert _real_seconds(clock, 1800.0) == 10.0
    assert _real_seconds(clock, 3610.0) == 10.0
    assert _real_seconds(clock, 3620.0) == 20.0
    assert _real_seconds(clock) == 30.0
    clock.advance(60.0)
    assert _real_seconds(clock) == 30.0
    assert _real_seconds(clock, 3620.0) == 20.0
    stamps = [clock.timestamp(at) for at in (0.0, 1800.0, 3620.0, clock.now())]
    assert stamps == sorted(stamps)
