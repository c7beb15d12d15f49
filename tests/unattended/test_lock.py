"""Local flock per cloud+family, the cloud-side heartbeat guard, and the heartbeat itself."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.errors import EXIT_INTERRUPTED, EXIT_OK, Interrupted, LockBusy
from osbuild.unattended import lock

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def test_second_holder_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    first = lock.LocalLock(tmp_path, "prod", "ws2022")
    first.acquire(build_id="20261126t030000-aaaaaa")
    second = lock.LocalLock(tmp_path, "prod", "ws2022")
    with pytest.raises(LockBusy) as info:
        second.acquire()
    assert info.value.exit_code == EXIT_OK
    message = str(info.value)
    assert "20261126t030000-aaaaaa" in message and "pid" in message
    # "ws2022 in prod: skipped: ..." names them; the reason does not repeat them.
    assert "ws2022" not in message and "prod" not in message
    # another family or another cloud is independent
    lock.LocalLock(tmp_path, "prod", "ws2019").acquire()
    lock.LocalLock(tmp_path, "staging", "ws2022").acquire()
    first.release()
    second.acquire()
    assert second.held


def test_cloud_names_cannot_escape_the_lock_dir(tmp_path: Path) -> None:
    path = lock.lock_path(tmp_path, "../evil/cloud", "ws2022")
    assert path.parent == tmp_path
    assert "/" not in path.name


def test_waiting_acquire_gets_the_lock_when_released(tmp_path: Path) -> None:
    holder = lock.LocalLock(tmp_path, "prod", "ws2022")
    holder.acquire()
    waiter = lock.LocalLock(tmp_path, "prod", "ws2022")
    started = threading.Event()
    errors: list[BaseException] = []

    def wait_for_it() -> None:
        started.set()
        try:
            waiter.acquire(wait=60, poll_interval=0.01)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    started.wait()
    holder.release()
    thread.join()
    assert errors == [] and waiter.held


def test_waiting_acquire_gives_up_at_the_deadline(tmp_path: Path) -> None:
    lock.LocalLock(tmp_path, "prod", "ws2022").acquire()
    with pytest.raises(LockBusy, match="after waiting"):
        lock.LocalLock(tmp_path, "prod", "ws2022").acquire(wait=0.05, poll_interval=0.01)


def test_a_waiting_acquire_says_once_what_it_waits_for(tmp_path: Path) -> None:
    lock.LocalLock(tmp_path, "prod", "ws2022").acquire(build_id="20261126t030000-aaaaaa")
    heard: list[str] = []
    with pytest.raises(LockBusy):
        lock.LocalLock(tmp_path, "prod", "ws2022").acquire(
            wait=0.2, poll_interval=0.01, on_wait=heard.append)
    assert len(heard) == 1, heard  # once, not at every poll
    assert "family lock" in heard[0] and "20261126t030000-aaaaaa" in heard[0]
    # a free lock is taken without a word
    free: list[str] = []
    lock.LocalLock(tmp_path, "prod", "ws2019").acquire(wait=1, on_wait=free.append)
    assert free == []


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from osbuild.unattended.lock import LocalLock;"
        f"LocalLock(Path({str(tmp_path)!r}), 'prod', 'ws2022').acquire();"
        "print('held', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {child.pid}"):
            lock.LocalLock(tmp_path, "prod", "ws2022").acquire()
        child.kill()
        child.wait()
        lock.LocalLock(tmp_path, "prod", "ws2022").acquire()
    finally:
        child.kill()
        child.wait()


# ---------------------------------------------------------------- cloud side, fake compute


@dataclass
class FakeServer:
    id: str
    name: str
    metadata: dict[str, str]
    status: str = "ACTIVE"
    tags: list[str] = field(default_factory=lambda: [naming.TAG])
    created_at: str | None = None


class FakeCompute:
    def __init__(self, servers: list[FakeServer]) -> None:
        self.items = servers
        self.queries: list[dict[str, Any]] = []

    def servers(self, **query: Any) -> list[FakeServer]:
        self.queries.append(query)
        return [s for s in self.items if query.get("tags") in s.tags]

    def set_server_metadata(self, server_id: str, **metadata: str) -> None:
        next(s for s in self.items if s.id == server_id).metadata.update(metadata)


@dataclass
class FakeImage:
    id: str
    name: str
    properties: dict[str, str]
    created_at: str
    status: str = "queued"
    is_hidden: bool = True


class FakeImages:
    """Glance's listing as the claims read it: by status and os_hidden."""

    def __init__(self, images: list[FakeImage]) -> None:
        self.items = images

    def images(self, **query: Any) -> list[FakeImage]:
        return [i for i in self.items if i.status == query.get("status", i.status)
                and i.is_hidden == query.get("is_hidden", False)]


class FakeConn:
    def __init__(self, servers: list[FakeServer], claims: list[FakeImage] | None = None) -> None:
        self.compute = FakeCompute(servers)
        self.image = FakeImages(claims or [])


def _claim(build_id: str, family: str, beat: datetime | None, created: str,
           hidden: bool = True) -> FakeImage:
    props = naming.labels(build_id, family, lock.CLAIM_ROLE)
    if beat is not None:
        props[naming.PROP_HEARTBEAT] = lock.format_heartbeat(beat)
    return FakeImage(id=f"img-{build_id}", name=naming.resource_name(build_id, "claim"),
                     properties=props, created_at=created, is_hidden=hidden)


def _builder(build_id: str, family: str, beat: datetime | None, role: str = "builder",
             created: str | None = None) -> Any:
    metadata = naming.labels(build_id, family, role)
    if beat is not None:
        metadata[naming.PROP_HEARTBEAT] = lock.format_heartbeat(beat)
    return FakeServer(id=f"srv-{build_id}", name=naming.resource_name(build_id, role),
                      metadata=metadata, created_at=created)


def test_active_builders_only_fresh_same_family_builders() -> None:
    conn = FakeConn([
        _builder("20261126t020000-aaaaaa", "ws2022", NOW - timedelta(seconds=30)),
        _builder("20261126t010000-bbbbbb", "ws2022", NOW - timedelta(hours=2)),  # stale
        _builder("20261126t010000-cccccc", "ws2019", NOW),  # other family
        _builder("20261126t010000-dddddd", "ws2022", None),  # never beat
        _builder("20261126t010000-eeeeee", "ws2022", NOW + timedelta(days=3)),  # nonsense
        _builder("20261126t010000-ffffff", "ws2022", NOW, role="verify"),
    ])
    found = lock.active_builders(conn, family="ws2022", now=NOW)
    assert [b.build_id for b in found] == ["20261126t020000-aaaaaa"]
    assert found[0].heartbeat == NOW - timedelta(seconds=30)
    assert conn.compute.queries[0]["tags"] == naming.TAG


def test_cloud_guard_skips_waits_and_ignores_own_build() -> None:
    now_beat = datetime.now(UTC)
    other = _builder("20261126t020000-aaaaaa", "ws2022", now_beat)
    conn = FakeConn([other])
    with pytest.raises(LockBusy, match="20261126t020000-aaaaaa"):
        lock.check_cloud_guard(conn, cloud="c", family="ws2022", build_id="20261126t030000-bbbbbb")
    # our own builder (a resumed build) never blocks us
    lock.check_cloud_guard(conn, cloud="c", family="ws2022", build_id="20261126t020000-aaaaaa")

    # waiting: the other builder goes away after two polls
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            conn.compute.items.clear()

    lock.check_cloud_guard(
        conn, cloud="c", family="ws2022", build_id="20261126t030000-bbbbbb",
        wait=3600, poll_interval=5, sleep=sleep,
    )
    assert sleeps == [5, 5]


def test_yield_to_an_earlier_live_build() -> None:
    beat = datetime.now(UTC)
    conn = FakeConn([
        _builder("20261126t020000-aaaaaa", "ws2022", beat),
        _builder("20261126t030000-bbbbbb", "ws2022", beat),
    ])
    assert lock.yield_to(conn, family="ws2022", build_id="20261126t030000-bbbbbb") is not None
    assert lock.yield_to(conn, family="ws2022", build_id="20261126t020000-aaaaaa") is None


@pytest.mark.parametrize("early_created,late_created,first", [
    # Host A (earlier build id) was slower to create its builder than host B: B looked
    # before A's builder existed and went on, so A must yield when it looks, not B.
    ("2026-11-26T02:00:40Z", "2026-11-26T02:00:31Z", "late"),
    # Created in the same second (Nova's timestamps have seconds): by build id.
    ("2026-11-26T02:00:31.900000", "2026-11-26T02:00:31.100000", "early"),
])
def test_the_builder_created_first_goes_on(early_created: str, late_created: str,
                                           first: str) -> None:
    beat = datetime.now(UTC)
    ids = {"early": "20261126t020000-aaaaaa", "late": "20261126t020001-bbbbbb"}
    conn = FakeConn([
        _builder(ids["early"], "ws2022", beat, created=early_created),
        _builder(ids["late"], "ws2022", beat, created=late_created),
    ])
    second = "early" if first == "late" else "late"
    other = lock.yield_to(conn, family="ws2022", build_id=ids[second])
    assert other is not None and other.build_id == ids[first]
    assert lock.yield_to(conn, family="ws2022", build_id=ids[first]) is None


def test_send_heartbeat_sets_only_its_key() -> None:
    server = _builder("20261126t020000-aaaaaa", "ws2022", None)
    conn = FakeConn([server])
    value = lock.send_heartbeat(conn, server.id, now=NOW)
    assert lock.parse_heartbeat(value) == NOW
    assert server.metadata[naming.PROP_HEARTBEAT] == value
    assert server.metadata[naming.PROP_FAMILY] == "ws2022"


def test_build_lock_takes_both_and_releases(tmp_path: Path) -> None:
    conn = FakeConn([])
    with lock.build_lock(conn, locks_dir=tmp_path, cloud="c", family="ws2022",
                         build_id="20261126t030000-bbbbbb") as held:
        assert held.held
        with pytest.raises(LockBusy):
            lock.LocalLock(tmp_path, "c", "ws2022").acquire()
    lock.LocalLock(tmp_path, "c", "ws2022").acquire()
    # a fresh builder elsewhere: refused, and the local lock is released again
    conn = FakeConn([_builder("20261126t020000-aaaaaa", "ws2022", datetime.now(UTC))])
    other_dir = tmp_path / "other"
    with pytest.raises(LockBusy), lock.build_lock(
        conn, locks_dir=other_dir, cloud="c", family="ws2022",
        build_id="20261126t030000-bbbbbb",
    ):
        pass
    lock.LocalLock(other_dir, "c", "ws2022").acquire()


def test_heartbeat_failure_is_reported_once_per_run_not_raised() -> None:
    class Flaky(FakeCompute):
        down = True

        def set_server_metadata(self, server_id: str, **metadata: str) -> None:
            if self.down:
                raise ConnectionError("connection reset")

    conn = FakeConn([])
    conn.compute = compute = Flaky([])
    heard: list[str] = []
    beat = lock.Heartbeat(lambda: lock.send_heartbeat(conn, "srv"), interval=60,
                          clock=lambda: 0.0, on_failure=heard.append)
    assert beat.maybe_beat() is False and beat.sent == 0
    assert beat.maybe_beat() is False  # the next poll tries again; one warning per run of them
    assert [m.split(" (")[0] for m in heard] == [
        "could not refresh the builder heartbeat: connection reset"]
    compute.down = False
    assert beat.maybe_beat() is True and beat.sent == 1
    compute.down, beat.last = True, None
    assert beat.maybe_beat() is False and len(heard) == 2  # a new run of failures


def test_cancel_while_waiting_is_an_interruption_not_a_skip(tmp_path: Path) -> None:
    holder = lock.LocalLock(tmp_path, "prod", "ws2022")
    holder.acquire()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(Interrupted) as info:
        lock.LocalLock(tmp_path, "prod", "ws2022").acquire(wait=3600, cancel=cancel)
    assert info.value.exit_code == EXIT_INTERRUPTED
    assert "waiting for the family lock" in str(info.value)


# ---------------------------------------------------------------- family claims


def test_a_build_past_its_builder_is_still_active_by_its_claim() -> None:
    now = datetime.now(UTC)
    capturing = "20261126t020000-aaaaaa"  # builder deleted: capture, boot test, promotion
    installing = "20261126t030000-bbbbbb"  # builder and claim
    conn = FakeConn(
        [_builder(installing, "ws2022", now - timedelta(seconds=200))],
        [_claim(capturing, "ws2022", now - timedelta(seconds=30), "2026-11-26T02:00:01Z"),
         _claim(installing, "ws2022", now - timedelta(seconds=5), "2026-11-26T03:00:01Z",
                hidden=False),  # just created, not yet hidden: listed all the same
         _claim("20261126t010000-cccccc", "ws2022", now - timedelta(seconds=900),
                "2026-11-26T01:00:01Z"),  # its osbuild died: stale
         _claim("20261126t040000-dddddd", "ws2025", now, "2026-11-26T04:00:01Z")])
    found = lock.active_builders(conn, family="ws2022", now=now)
    assert [(b.build_id, b.server_id, b.claim_id) for b in found] == [
        (capturing, "", f"img-{capturing}"),
        (installing, f"srv-{installing}", f"img-{installing}")]
    # The builder's heartbeat is 200 s old, its claim's 5 s: the build is as alive as the
    # fresher of the two.
    assert found[1].heartbeat == lock.parse_heartbeat(lock.format_heartbeat(
        now - timedelta(seconds=5)))
    assert found[0].describe() == (f"build {capturing} (claim image "
                                   f"osbuild-{capturing}-claim, img-{capturing})")
    assert found[1].describe().startswith(f"builder osbuild-{installing}-builder (srv-")
    # The builder race of old (lock-check) counts builders alone.
    assert [b.build_id for b in lock.active_builders(conn, family="ws2022", now=now,
                                                     builders_only=True)] == [installing]


def test_the_cloud_guard_skips_while_another_host_captures() -> None:
    other = "20261126t020000-aaaaaa"
    conn = FakeConn([], [_claim(other, "ws2022", datetime.now(UTC), "2026-11-26T02:00:01Z")])
    with pytest.raises(LockBusy) as busy:
        lock.check_cloud_guard(conn, cloud="c", family="ws2022", build_id="20261126t030000-b")
    assert str(busy.value).startswith(
        f"already being built from another host: build {other} (claim image "
        f"osbuild-{other}-claim, img-{other}) sent a heartbeat at ")
    assert busy.value.build_id == other
    # Its own claim never blocks a (resumed) build.
    lock.check_cloud_guard(conn, cloud="c", family="ws2022", build_id=other)


@pytest.mark.parametrize(("mine_created", "theirs_created", "mine", "theirs", "yields"), [
    ("2026-11-26T03:00:05Z", "2026-11-26T03:00:04Z", "20261126t030000-aaaaaa",
     "20261126t030001-bbbbbb", True),  # theirs was created first, though its id is later
    ("2026-11-26T03:00:04Z", "2026-11-26T03:00:05Z", "20261126t030001-bbbbbb",
     "20261126t030000-aaaaaa", False),  # mine was first
    ("2026-11-26T03:00:04.900Z", "2026-11-26T03:00:04.100Z", "20261126t030000-aaaaaa",
     "20261126t030001-bbbbbb", False),  # the same second: the lower build id goes on
    ("2026-11-26T03:00:04.100Z", "2026-11-26T03:00:04.900Z", "20261126t030001-bbbbbb",
     "20261126t030000-aaaaaa", True),
])
def test_the_claim_glance_created_first_goes_on(mine_created: str, theirs_created: str,
                                                mine: str, theirs: str, yields: bool) -> None:
    now = datetime.now(UTC)
    conn = FakeConn([], [_claim(mine, "ws2022", now, mine_created),
                         _claim(theirs, "ws2022", now, theirs_created)])
    other = lock.yield_to_claim(conn, family="ws2022", build_id=mine, now=now)
    assert (other.build_id if other else None) == (theirs if yields else None)


def test_a_stale_or_foreign_claim_is_never_yielded_to() -> None:
    now = datetime.now(UTC)
    mine = "20261126t030001-bbbbbb"
    conn = FakeConn([], [
        _claim(mine, "ws2022", now, "2026-11-26T03:00:05Z"),
        _claim("20261126t020000-aaaaaa", "ws2022", now - timedelta(seconds=900),
               "2026-11-26T02:00:01Z"),  # a dead host's, older
        _claim("20261126t030000-cccccc", "ws2025", now, "2026-11-26T03:00:01Z")])
    assert lock.yield_to_claim(conn, family="ws2022", build_id=mine, now=now) is None
