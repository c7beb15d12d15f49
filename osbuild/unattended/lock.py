"""One build per image family per cloud: a local file lock plus a cloud-side heartbeat guard."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild import naming
from osbuild.cloud import compute
from osbuild.cloud.clock import session_clock
from osbuild.cloud.retry import is_not_found
from osbuild.durations import format_duration
from osbuild.errors import Interrupted, LockBusy

log = logging.getLogger(__name__)

# The orchestrator refreshes the builder's heartbeat at least this often while it watches;
# a heartbeat older than STALE_AFTER means nobody is watching that builder any more (the
# host died or the process was killed). Generous, because clocks of cron hosts drift.
HEARTBEAT_INTERVAL = 60.0
STALE_AFTER = 300.0

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def lock_path(locks_dir: Path, cloud: str, family: str) -> Path:
    # Cloud names come from clouds.yaml and may hold anything; keep the file name tame.
    return locks_dir / f"{_UNSAFE.sub('_', cloud)}--{_UNSAFE.sub('_', family)}.lock"


class LocalLock:
    """``fcntl.flock`` on ``<locks_dir>/<cloud>--<family>.lock``.

    The kernel drops the lock when the holder dies, so a crashed or SIGKILLed run never
    leaves a stale lock behind. The file holds the holder's description for the message
    another run prints; it is never deleted (deleting a flock file races with lockers).
    """

    def __init__(self, locks_dir: Path, cloud: str, family: str) -> None:
        self.cloud = cloud
        self.family = family
        self.path = lock_path(locks_dir, cloud, family)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(
        self,
        *,
        wait: float | None = None,
        build_id: str | None = None,
        poll_interval: float = 0.5,
        cancel: threading.Event | None = None,
        on_wait: Callable[[str], None] | None = None,
        pace: float = 1.0,
    ) -> None:
        """Take the lock; ``wait=None`` fails at once, else retries until ``wait`` seconds.

        ``wait`` is in the cloud's seconds, ``pace`` of them per real second (see
        :mod:`osbuild.cloud.clock`); ``poll_interval`` is real time. Raises
        :class:`LockBusy` naming the holder when the lock stays taken. ``on_wait`` is told
        once, naming the holder, when the lock is taken and the wait begins.
        """
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + (wait or 0.0) / pace
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if wait is None or time.monotonic() >= deadline:
                        raise LockBusy(self._busy_message(wait)) from None
                    if on_wait is not None:
                        on_wait(f"waiting up to {format_duration(wait)} for the family lock, "
                                f"held{self._holder_text()}")
                        on_wait = None
                    pause = min(poll_interval, max(0.0, deadline - time.monotonic()))
                    if cancel is None:
                        time.sleep(pause)
                    elif cancel.wait(pause):
                        raise Interrupted(where="while waiting for the family lock") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "build_id": build_id,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def _holder_text(self) -> str:
        info = self.holder() or {}
        who = ""
        if info:
            who = f" by pid {info.get('pid')} on {info.get('host')}"
            if info.get("build_id"):
                who += f" (build {info['build_id']})"
        return who

    def _busy_message(self, wait: float | None) -> str:
        who = self._holder_text()
        waited = f" after waiting {format_duration(wait)}" if wait else ""
        return (
            # The summary line names the family and cloud: "FAMILY in CLOUD: skipped: ..."
            f"already being built{who}{waited}; "
            "skipping (use --wait-lock to wait)"
        )

    def __enter__(self) -> LocalLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------- cloud side


def format_heartbeat(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")


def parse_heartbeat(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_fresh(heartbeat: datetime | None, now: datetime, stale_after: float = STALE_AFTER) -> bool:
    """A heartbeat is fresh within ``stale_after`` either side of now.

    A timestamp slightly in the future is another host's fast clock; one far in the
    future is nonsense and must not block the family forever.
    """
    if heartbeat is None:
        return False
    return abs((now - heartbeat).total_seconds()) <= stale_after


@dataclass(frozen=True)
class ActiveBuilder:
    server_id: str
    name: str
    build_id: str
    family: str
    status: str
    heartbeat: datetime
    created: datetime | None = None  # when Nova created it (None: the cloud did not say)


def _parse_created(value: str | None) -> datetime | None:
    try:
        created = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _builders(conn: Any, family: str | None) -> Iterator[compute.Server]:
    for server in compute.servers(conn, tag=naming.TAG):
        metadata = server.metadata
        if metadata.get(naming.PROP_ROLE, "builder") != "builder":
            continue  # a verify server is not a build in progress
        if family is not None and metadata.get(naming.PROP_FAMILY) != family:
            continue
        yield server


def active_builders(
    conn: Any,
    *,
    family: str | None = None,
    now: datetime | None = None,
    stale_after: float = STALE_AFTER,
    exclude_build_id: str | None = None,
) -> list[ActiveBuilder]:
    """Builder servers (tag ``osbuild``) of ``family`` whose heartbeat is fresh, oldest first."""
    now = now or datetime.now(UTC)
    found = []
    for server in _builders(conn, family):
        metadata = server.metadata
        build_id = metadata.get(naming.PROP_BUILD_ID, "")
        if exclude_build_id is not None and build_id == exclude_build_id:
            continue
        beat = parse_heartbeat(metadata.get(naming.PROP_HEARTBEAT))
        if not is_fresh(beat, now, stale_after):
            continue
        assert beat is not None
        found.append(
            ActiveBuilder(
                server_id=server.id,
                name=server.name,
                build_id=build_id,
                family=metadata.get(naming.PROP_FAMILY, ""),
                status=server.status,
                heartbeat=beat,
                created=_parse_created(getattr(server, "created_at", None)),
            )
        )
    return sorted(found, key=lambda b: b.build_id)


def check_cloud_guard(
    conn: Any,
    *,
    cloud: str,
    family: str,
    build_id: str,
    wait: float | None = None,
    poll_interval: float = 15.0,
    stale_after: float = STALE_AFTER,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    cancel: threading.Event | None = None,
    on_wait: Callable[[str], None] | None = None,
    pace: float = 1.0,
) -> None:
    """Raise :class:`LockBusy` while another host's builder of ``family`` has a fresh heartbeat.

    ``wait`` seconds (None: do not wait) are spent polling for that builder to finish or
    go stale; ``wait``, ``poll_interval``, ``clock`` and ``sleep`` count the cloud's
    seconds, ``pace`` of them per real second (``cancel`` waits real ones). Our own build id
    is ignored, so a resumed build does not block itself.
    ``on_wait`` is told once, naming the builder, when the wait begins.
    """
    deadline = clock() + (wait or 0.0)
    while True:
        others = active_builders(
            conn, family=family, stale_after=stale_after, exclude_build_id=build_id
        )
        if not others:
            return
        if wait is None or clock() >= deadline:
            other = others[0]
            waited = f" after waiting {format_duration(wait)}" if wait else ""
            raise LockBusy(
                f"already being built from another host: builder {other.name} "
                f"({other.server_id}, build {other.build_id}) sent a heartbeat at "
                f"{format_heartbeat(other.heartbeat)}{waited}; skipping "
                "(use --wait-lock to wait)",
                build_id=other.build_id,
            )
        if on_wait is not None:
            on_wait(f"waiting up to {format_duration(wait)} for builder {others[0].name} "
                    f"(build {others[0].build_id}, another host) to finish")
            on_wait = None
        pause = min(poll_interval, max(0.0, deadline - clock()))
        if cancel is None:
            sleep(pause)
        elif cancel.wait(pause / pace):
            raise Interrupted(where=f"while waiting for builder {others[0].name} to finish")


def yield_to(
    conn: Any, *, family: str, build_id: str, stale_after: float = STALE_AFTER
) -> ActiveBuilder | None:
    """After booting our builder: a live builder of the family that goes first, if any.

    Two hosts can pass :func:`check_cloud_guard` at the same moment and both boot a builder.
    The one Nova created first goes on; the other backs out. Creation order is the one both
    can judge: a build looks once its own create has returned, so it sees every builder
    created before its own. Build ids cannot decide it (they were the rule until two hosts
    both built): the earlier build id's builder may not exist yet when the later build id
    looks, and then neither backs out. Builders created in the same second (Nova's
    timestamps have seconds) go by build id; by the time a build looks (its builder is
    ACTIVE, seconds later) both exist.
    """
    builders = active_builders(conn, family=family, stale_after=stale_after)
    mine = next((b for b in builders if b.build_id == build_id), None)
    for other in builders:
        if other.build_id and other.build_id != build_id and _goes_first(other, mine, build_id):
            return other
    return None


def _goes_first(other: ActiveBuilder, mine: ActiveBuilder | None, build_id: str) -> bool:
    created = mine.created if mine is not None else None
    if other.created is not None and created is not None:
        other_second = other.created.replace(microsecond=0)
        my_second = created.replace(microsecond=0)
        if other_second != my_second:
            return other_second < my_second
    return other.build_id < build_id


def send_heartbeat(conn: Any, server_id: str, *, now: datetime | None = None) -> str:
    """Stamp the builder's metadata with the current time; returns the value written.

    Only the one key is set (``set_server_metadata`` merges), so other metadata is kept.
    A builder that is already gone is not an error here: the watcher notices that itself.
    """
    value = format_heartbeat(now)
    try:
        compute.set_server_metadata(conn, server_id, {naming.PROP_HEARTBEAT: value})
    except Exception as exc:
        if not is_not_found(exc):
            raise
    return value


def drop_heartbeat(conn: Any, server_id: str) -> None:
    """A builder kept for debugging (--keep-on-failure) is no build in progress: without
    its heartbeat no host takes the family for busy (its fresh one skipped every build of
    the family for :data:`STALE_AFTER`, "already being built from another host")."""
    try:
        compute.delete_server_metadata(conn, server_id, [naming.PROP_HEARTBEAT])
    except Exception as exc:
        if not is_not_found(exc):
            raise


class Heartbeat:
    """Refreshes a builder's heartbeat from the watcher's poll loop, at most every ``interval``.

    Called in the loop rather than from a thread, so the connection is only ever used by
    one thread. A failed stamp is never raised: a missed heartbeat must not fail a build
    (another host would only see it as stale after :data:`STALE_AFTER`). ``on_failure``
    hears the first failure of a run of them (the build's warning event); the rest, and
    every failure without ``on_failure``, go to the log at INFO, never to stderr, which
    ``--json 2>&1`` shares with the JSON events.
    """

    def __init__(self, conn: Any, server_id: str, *, interval: float = HEARTBEAT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.conn = conn
        self.server_id = server_id
        self.interval = interval
        self.clock = clock
        self.on_failure = on_failure
        self.last: float | None = None
        self.sent = 0
        self.failing = False

    def maybe_beat(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            return False
        try:
            send_heartbeat(self.conn, self.server_id)
        except Exception as exc:  # transient API trouble: try again next poll
            message = f"could not refresh the builder heartbeat: {exc}"
            log.info("%s", message)
            if not self.failing and self.on_failure is not None:
                self.on_failure(f"{message} (tried again at every poll; other hosts may "
                                f"take the build for dead after {format_duration(STALE_AFTER)})")
            self.failing = True
            return False
        self.last = now
        self.sent += 1
        self.failing = False
        return True


@contextlib.contextmanager
def build_lock(
    conn: Any,
    *,
    locks_dir: Path,
    cloud: str,
    family: str,
    build_id: str,
    wait: float | None = None,
    cancel: threading.Event | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[LocalLock]:
    """Hold the family's local lock and pass the cloud guard, or raise :class:`LockBusy`.

    With ``wait`` (the cloud's seconds, as every duration) the local wait and the cloud wait
    share one deadline; ``on_wait`` hears what is waited for when a wait begins (a cron log
    then says why a build sat still).
    """
    clock = session_clock(conn)
    start = clock.now()
    lock = LocalLock(locks_dir, cloud, family)
    lock.acquire(wait=wait, build_id=build_id, cancel=cancel, on_wait=on_wait,
                 pace=clock.scale)
    try:
        remaining = None if wait is None else max(0.0, wait - (clock.now() - start))
        check_cloud_guard(conn, cloud=cloud, family=family, build_id=build_id, wait=remaining,
                          cancel=cancel, on_wait=on_wait, clock=clock.now,
                          sleep=clock.sleep, pace=clock.scale)
        yield lock
    finally:
        lock.release()
