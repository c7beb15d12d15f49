"""The cloud-side guard and heartbeat through real openstacksdk against the simulated cloud."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.errors import LockBusy
from osbuild.unattended import lock

from .helpers import server

OTHER = "20261126t020000-0a0a0a"
MINE = "20261126t030000-0b0b0b"


@pytest.fixture
def conn(sim: Any) -> Iterator[Any]:
    conn = sim.connect()
    yield conn
    for s in conn.compute.servers(tags=naming.TAG):
        conn.compute.delete_server(s.id)
        conn.compute.wait_for_delete(s, interval=0.05, wait=30)


def test_guard_sees_another_hosts_fresh_builder(conn: Any, tmp_path: Path) -> None:
    other = server(conn, OTHER, "ws2022", datetime.now(UTC))
    with pytest.raises(LockBusy, match=other.id), lock.build_lock(
        conn, locks_dir=tmp_path, cloud="sim", family="ws2022", build_id=MINE
    ):
        pass
    # another family is free, and so is ours once the other heartbeat goes stale
    with lock.build_lock(conn, locks_dir=tmp_path, cloud="sim", family="ws2019",
                         build_id=MINE):
        pass
    stale = datetime.now(UTC) - timedelta(seconds=lock.STALE_AFTER + 60)
    lock.send_heartbeat(conn, other.id, now=stale)
    assert lock.active_builders(conn, family="ws2022") == []
    with lock.build_lock(conn, locks_dir=tmp_path, cloud="sim", family="ws2022",
                         build_id=MINE):
        pass


def test_heartbeat_keeps_other_metadata_and_is_rate_limited(conn: Any) -> None:
    mine = server(conn, MINE, "ws2022", None)
    ticks = iter([0.0, 10.0, 61.0])
    beat = lock.Heartbeat(conn, mine.id, interval=60, clock=lambda: next(ticks))
    assert [beat.maybe_beat(), beat.maybe_beat(), beat.maybe_beat()] == [True, False, True]
    metadata = conn.compute.get_server(mine.id).metadata
    assert lock.is_fresh(lock.parse_heartbeat(metadata[naming.PROP_HEARTBEAT]),
                         datetime.now(UTC))
    assert metadata[naming.PROP_BUILD_ID] == MINE
    found = lock.active_builders(conn, family="ws2022")
    assert [b.server_id for b in found] == [mine.id]
    # our own builder never blocks a resumed build of ours
    lock.check_cloud_guard(conn, cloud="sim", family="ws2022", build_id=MINE)
    # a deleted builder: the heartbeat is a quiet no-op
    conn.compute.delete_server(mine.id)
    conn.compute.wait_for_delete(mine, interval=0.05, wait=30)
    lock.send_heartbeat(conn, mine.id)


def test_the_cloud_guard_says_once_which_builder_it_waits_for(conn: Any,
                                                              tmp_path: Path) -> None:
    other = server(conn, OTHER, "ws2022", datetime.now(UTC))
    heard: list[str] = []
    with pytest.raises(LockBusy, match="after waiting"):
        lock.check_cloud_guard(conn, cloud="sim", family="ws2022", build_id=MINE, wait=0.3,
                               poll_interval=0.05, on_wait=heard.append)
    assert len(heard) == 1, heard
    assert other.name in heard[0] and OTHER in heard[0]
