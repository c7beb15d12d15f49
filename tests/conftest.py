"""Shared fixtures for the whole suite."""

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def sim() -> Iterator[Any]:
    """A simulated cloud at real-time speed: tests move its clock with `sim.advance(s)`."""
    from osbuild.sim import SimCloud

    with SimCloud(speed=1.0) as cloud:
        yield cloud


@pytest.fixture
def fast_sim() -> Iterator[Any]:
    """A simulated cloud at demo speed (600x), for flows that wait on real status changes."""
    from osbuild.sim import SimCloud

    with SimCloud(speed=600.0) as cloud:
        yield cloud


@pytest.fixture
def conn(sim: Any) -> Any:
    """An unmodified openstacksdk Connection to the `sim` cloud."""
    return sim.connect()
