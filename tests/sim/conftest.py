"""Helpers for driving the simulated cloud's clock in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def run_until(sim: Any, predicate: Callable[[], bool], *, step: float = 5.0,
              limit: float = 7200.0) -> None:
    """Advance simulated time in `step`s until `predicate()` holds (fails after `limit`)."""
    waited = 0.0
    while not predicate():
        if waited >= limit:
            raise AssertionError(f"condition not reached after {limit} simulated seconds")
        sim.advance(step)
        waited += step


def server_status(conn: Any, server_id: str) -> str:
    return conn.compute.get_server(server_id).status


def volume_status(conn: Any, volume_id: str) -> str:
    return conn.block_storage.get_volume(volume_id).status


@pytest.fixture
def boot_blank(sim: Any, conn: Any) -> Callable[..., Any]:
    """Boot a server from a Nova-created blank volume and wait (simulated) for ACTIVE."""

    def boot(name: str = "blank", **extra: Any) -> Any:
        server = conn.compute.create_server(
            name=name, flavor_id="2", networks="none",
            block_device_mapping=[{"boot_index": 0, "source_type": "blank",
                                   "destination_type": "volume", "volume_size": 1,
                                   "delete_on_termination": True}],
            **extra)
        run_until(sim, lambda: server_status(conn, server.id) != "BUILD")
        return conn.compute.get_server(server.id)

    return boot
