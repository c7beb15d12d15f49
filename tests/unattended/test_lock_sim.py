"""The cloud-side guard and heartbeat through real openstacksdk against the simulated cloud."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.cloud.clock import CancelToken
from osbuild.errors import LockBusy
from osbuild.pipeline.context import BuildContext, BuildOptions
from osbuild.pipeline.events import EventBus
from osbuild.pipeline.steps.claim_family import ClaimFamily
from osbuild.spec import parse_spec
from osbuild.unattended import gc, lock
from tests.pipeline.test_runner import SPEC

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
    beat = lock.Heartbeat(lambda: lock.send_heartbeat(conn, mine.id), interval=60,
                         clock=lambda: next(ticks))
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


def test_a_claim_is_refreshed_by_every_wait_and_gc_goes_by_its_heartbeat(
        sim: Any, tmp_path: Path) -> None:
    conn = sim.connect()
    ctx = BuildContext(spec=parse_spec(SPEC), build_id=MINE, conn=conn, cloud_name="sim",
                       options=BuildOptions(log_dir=tmp_path, lock_family=True,
                                            heartbeat_every=0.0),
                       bus=EventBus(), cancel=CancelToken())
    ClaimFamily().run(ctx)  # no other claim: it goes on
    [claim] = lock.claims(conn, "unit")
    assert (claim.name, claim.status, claim.hidden) == (f"osbuild-{MINE}-claim", "queued", True)
    assert naming.TAG in claim.tags
    [held] = lock.active_builders(conn, family="unit")
    assert (held.build_id, held.server_id, held.claim_id) == (MINE, "", claim.id)

    # Every wait of the build stamps the claim (here at every pause: heartbeat_every 0).
    stale = datetime.now(UTC) - timedelta(seconds=lock.STALE_AFTER + 60)
    lock.send_claim_heartbeat(conn, claim.id, now=stale)
    assert lock.active_builders(conn, family="unit") == []
    assert MINE not in gc.discover(conn, datetime.now(UTC))[2]
    sent = ctx.claim.sent if ctx.claim else 0
    ctx.pause(0.01)
    assert ctx.claim is not None and ctx.claim.sent == sent + 1
    assert [b.build_id for b in lock.active_builders(conn, family="unit")] == [MINE]
    assert MINE in gc.discover(conn, datetime.now(UTC))[2]  # gc takes the build for running

    # A claim that made it first wins the contest, and this build backs out.
    image = conn.image.create_image(
        name=naming.resource_name(OTHER, "claim"), disk_format="raw", container_format="bare",
        allow_duplicates=True, **naming.labels(OTHER, "unit", lock.CLAIM_ROLE),
        **{naming.PROP_HEARTBEAT: lock.format_heartbeat()})
    try:
        assert lock.yield_to_claim(conn, family="unit", build_id=MINE) is None  # later
        with pytest.raises(LockBusy, match=f"already being built by build {MINE} "):
            ClaimFamily().run(_other_ctx(conn, tmp_path))
    finally:
        conn.image.delete_image(image.id)
    conn.image.delete_image(claim.id)


def _other_ctx(conn: Any, tmp_path: Path) -> BuildContext:
    return BuildContext(spec=parse_spec(SPEC), build_id=OTHER, conn=conn, cloud_name="sim",
                        options=BuildOptions(log_dir=tmp_path, lock_family=True),
                        bus=EventBus(), cancel=CancelToken())


def test_of_two_builds_claiming_at_once_exactly_one_goes_on(sim: Any, tmp_path: Path) -> None:
    # The later build id claims first and looks first. Had it looked before the other claim
    # was listed (a pause in the cloud's time: milliseconds here), it went on, and so did
    # the other, which found the first claim stamped in the same second and the lower build
    # id its own. Looking CLAIM_SETTLE wall-clock seconds later, it sees the other claim.
    conn = sim.connect()
    outcomes: dict[str, str] = {}

    def claim(build_id: str) -> None:
        ctx = BuildContext(spec=parse_spec(SPEC), build_id=build_id, conn=sim.connect(),
                           cloud_name="sim",
                           options=BuildOptions(log_dir=tmp_path / build_id, lock_family=True),
                           bus=EventBus(), cancel=CancelToken())
        try:
            ClaimFamily().run(ctx)
            outcomes[build_id] = "went on"
        except LockBusy as exc:
            outcomes[build_id] = f"backed out for {exc.build_id}"

    first = threading.Thread(target=claim, args=(MINE,))
    second = threading.Thread(target=claim, args=(OTHER,))
    first.start()
    time.sleep(0.1)
    second.start()
    first.join(30)
    second.join(30)
    assert sorted(outcomes.values()) in (
        ["backed out for " + OTHER, "went on"], ["backed out for " + MINE, "went on"]), outcomes
    for image in lock.claims(conn, "unit"):
        conn.image.delete_image(image.id)
