"""One build per image family per cloud: a local file lock plus a cloud-side heartbeat guard.

In the cloud, a build is marked by its family claim (a data-less Glance image with role
``claim``, created before anything else and deleted last) and by its builder server, each
carrying a heartbeat that the build refreshes while it waits. The claim covers the whole
build: the builder is gone once capture starts, and capture, the boot test and promotion
still take a quarter of an hour in which another host must not start the family again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild import naming
from osbuild.cloud import compute
from osbuild.cloud import images as image_api
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


def _gave_up(wait: float | None) -> str:
    """How a busy family's skip ends: after the whole --wait-lock, or at once."""
    if wait:
        return (f" after waiting {format_duration(round(wait))}; skipping (a longer "
                "--wait-lock waits longer)")
    return "; skipping (use --wait-lock to wait)"


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
                        on_wait(f"waiting up to {format_duration(round(wait))} for the family "
                                f"lock, held{self._holder_text()}")
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
        # The summary line names the family and cloud: "FAMILY in CLOUD: skipped: ..."
        return f"already being built{self._holder_text()}{_gave_up(wait)}"

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


# The role of a build's family claim (a Glance image without data: it stays ``queued``).
CLAIM_ROLE = "claim"
# A build looks at the other claims this long after its own was created, so that every
# claim stamped in the same second as its own (Glance's created_at has whole seconds) is
# already listed when it looks. Wall-clock seconds, not the cloud's: the stamps are
# wall-clock times (a simulated cloud's too, whatever its pace; there a cloud-time pause
# was over within the same second, and two builds that claimed in one second both built).
CLAIM_SETTLE = 2.0


@dataclass(frozen=True)
class ActiveBuilder:
    """A build in progress, seen from the cloud: its builder server, else (the builder is
    gone: capture, boot test, promotion) its family claim."""

    server_id: str  # "" when only the claim is left
    name: str  # the builder's name, else the claim's
    build_id: str
    family: str
    status: str
    heartbeat: datetime
    created: datetime | None = None  # when Nova created it (None: the cloud did not say)
    claim_id: str | None = None  # its claim image, if it has one

    def describe(self) -> str:
        """``builder NAME (ID, build B)`` or, once the builder is gone, ``build B (claim
        image NAME, ID)``."""
        if self.server_id:
            return f"builder {self.name} ({self.server_id}, build {self.build_id})"
        return f"build {self.build_id} (claim image {self.name}, {self.claim_id})"


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


def claims(conn: Any, family: str | None = None) -> list[image_api.Image]:
    """Every family claim of ``family`` (None: of any family), fresh or not.

    A claim never gets data, so it stays ``queued``: listing queued images keeps the reply
    small. The visible listing goes first: a claim is created visible and then hidden, so
    one that changes between the two listings is in the second.
    """
    found: dict[str, image_api.Image] = {}
    for hidden in (False, True):
        for image in image_api.images(conn, status="queued", is_hidden=hidden):
            props = image.properties
            if props.get(naming.PROP_ROLE) != CLAIM_ROLE:
                continue
            if family is not None and props.get(naming.PROP_FAMILY) != family:
                continue
            found[image.id] = image
    return list(found.values())


def active_builders(
    conn: Any,
    *,
    family: str | None = None,
    now: datetime | None = None,
    stale_after: float = STALE_AFTER,
    exclude_build_id: str | None = None,
    builders_only: bool = False,
) -> list[ActiveBuilder]:
    """Builds of ``family`` in progress, by build id: a builder server (tag ``osbuild``) or a
    family claim with a fresh heartbeat. A build with both shows its builder, with the
    fresher of the two heartbeats."""
    now = now or datetime.now(UTC)
    found: dict[str, ActiveBuilder] = {}
    for server in _builders(conn, family):
        metadata = server.metadata
        build_id = metadata.get(naming.PROP_BUILD_ID, "")
        if exclude_build_id is not None and build_id == exclude_build_id:
            continue
        beat = parse_heartbeat(metadata.get(naming.PROP_HEARTBEAT))
        if not is_fresh(beat, now, stale_after):
            continue
        assert beat is not None
        found[build_id or server.id] = ActiveBuilder(
            server_id=server.id,
            name=server.name,
            build_id=build_id,
            family=metadata.get(naming.PROP_FAMILY, ""),
            status=server.status,
            heartbeat=beat,
            created=_parse_created(getattr(server, "created_at", None)),
        )
    for claim in [] if builders_only else claims(conn, family):
        props = claim.properties
        build_id = str(props.get(naming.PROP_BUILD_ID, ""))
        if not build_id or (exclude_build_id is not None and build_id == exclude_build_id):
            continue
        beat = parse_heartbeat(str(props.get(naming.PROP_HEARTBEAT) or ""))
        if not is_fresh(beat, now, stale_after):
            continue
        assert beat is not None
        builder = found.get(build_id)
        if builder is not None:
            found[build_id] = replace(builder, claim_id=claim.id,
                                      heartbeat=max(builder.heartbeat, beat))
            continue
        found[build_id] = ActiveBuilder(
            server_id="", name=claim.name, build_id=build_id,
            family=str(props.get(naming.PROP_FAMILY, "")), status=claim.status,
            heartbeat=beat, created=_parse_created(claim.created_at), claim_id=claim.id)
    return sorted(found.values(), key=lambda b: b.build_id)


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
    on_stale: Callable[[str], None] | None = None,
) -> None:
    """Raise :class:`LockBusy` while another host's builder of ``family`` has a fresh heartbeat.

    ``wait`` seconds (None: do not wait) are spent polling for that builder to finish or
    go stale; ``wait``, ``poll_interval``, ``clock`` and ``sleep`` count the cloud's
    seconds, ``pace`` of them per real second (``cancel`` waits real ones). Our own build id
    is ignored, so a resumed build does not block itself.
    ``on_wait`` is told once, naming the builder, when the wait begins; ``on_stale``, when
    the guard passes, of each other build whose builder or claim is still there with a
    stale heartbeat (its osbuild died: what it left stays for its resume or gc).
    """
    deadline = clock() + (wait or 0.0)
    while True:
        now = datetime.now(UTC)
        # Stale ones too, in the same listings: they are what a dead build left.
        seen = active_builders(conn, family=family, now=now, stale_after=math.inf,
                               exclude_build_id=build_id)
        others = [b for b in seen if is_fresh(b.heartbeat, now, stale_after)]
        if not others:
            for dead in seen if on_stale is not None else []:
                assert on_stale is not None
                on_stale(f"build {dead.build_id} of {family} looks dead: {dead.describe()} "
                         f"sent its last heartbeat at {format_heartbeat(dead.heartbeat)}, "
                         f"over {format_duration(stale_after)} ago; going on without it. What "
                         f"it left stays until `osbuild resume {dead.build_id}` on its host "
                         "or `osbuild gc`")
            return
        if wait is None or clock() >= deadline:
            other = others[0]
            raise LockBusy(
                f"already being built from another host: {other.describe()} sent a "
                f"heartbeat at {format_heartbeat(other.heartbeat)}{_gave_up(wait)}",
                build_id=other.build_id,
            )
        if on_wait is not None:
            # Not "another host": a build of this host whose osbuild died keeps a fresh
            # heartbeat for minutes, and the caller tells that case itself.
            on_wait(f"waiting up to {format_duration(round(wait))} for {others[0].describe()} "
                    "to finish")
            on_wait = None
        pause = min(poll_interval, max(0.0, deadline - clock()))
        if cancel is None:
            sleep(pause)
        elif cancel.wait(pause / pace):
            raise Interrupted(where=f"while waiting for build {others[0].build_id} to finish")


def yield_to_claim(
    conn: Any, *, family: str, build_id: str, stale_after: float = STALE_AFTER,
    now: datetime | None = None,
) -> ActiveBuilder | None:
    """After creating our claim: a live claim of the family that goes first, if any.

    Two hosts can pass :func:`check_cloud_guard` at the same moment and both claim the
    family. The claim Glance created first goes on (same second: the lower build id); the
    other build backs out before it has created anything else. A build looks
    :data:`CLAIM_SETTLE` seconds after its own claim was created, so it sees every claim
    created before its own or in the same second.
    """
    now = now or datetime.now(UTC)
    mine: ActiveBuilder | None = None
    others: list[ActiveBuilder] = []
    for claim in claims(conn, family):
        props = claim.properties
        claim_build = str(props.get(naming.PROP_BUILD_ID, ""))
        beat = parse_heartbeat(str(props.get(naming.PROP_HEARTBEAT) or ""))
        if not claim_build or beat is None:
            continue
        entry = ActiveBuilder(server_id="", name=claim.name, build_id=claim_build,
                              family=family, status=claim.status, heartbeat=beat,
                              created=_parse_created(claim.created_at), claim_id=claim.id)
        if claim_build == build_id:
            mine = entry
        elif is_fresh(beat, now, stale_after):
            others.append(entry)
    for other in sorted(others, key=lambda b: b.build_id):
        if _goes_first(other, mine, build_id):
            return other
    return None


def yield_to(
    conn: Any, *, family: str, build_id: str, stale_after: float = STALE_AFTER
) -> ActiveBuilder | None:
    """After booting our builder: a live builder of the family that goes first, if any.

    Builds that claim the family settled this at their claim (:func:`yield_to_claim`); the
    builders decide between builds of an osbuild that made no claim.

    Two hosts can pass :func:`check_cloud_guard` at the same moment and both boot a builder.
    The one Nova created first goes on; the other backs out. Creation order is the one both
    can judge: a build looks once its own create has returned, so it sees every builder
    created before its own. Build ids cannot decide it (they were the rule until two hosts
    both built): the earlier build id's builder may not exist yet when the later build id
    looks, and then neither backs out. Builders created in the same second (Nova's
    timestamps have seconds) go by build id; by the time a build looks (its builder is
    ACTIVE, seconds later) both exist.
    """
    builders = active_builders(conn, family=family, stale_after=stale_after,
                               builders_only=True)
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


def send_claim_heartbeat(conn: Any, image_id: str, *, now: datetime | None = None) -> str:
    """Stamp the family claim's heartbeat property; returns the value written."""
    value = format_heartbeat(now)
    stamp: dict[str, Any] = {naming.PROP_HEARTBEAT: value}
    image_api.update_image(conn, image_id, **stamp)
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
    """Refreshes a heartbeat (``stamp``) from a poll loop, at most every ``interval``.

    The builder's is refreshed from the watcher's loop, the claim's from every wait of the
    build (``BuildContext.pause``). Called in the loop rather than from a thread, so the
    connection is only ever used by one thread. A failed stamp is never raised: a missed
    heartbeat must not fail a build (another host would only see it as stale after
    :data:`STALE_AFTER`). ``on_failure``
    hears the first failure of a run of them (the build's warning event); the rest, and
    every failure without ``on_failure``, go to the log at INFO, never to stderr, which
    ``--json 2>&1`` shares with the JSON events.
    """

    def __init__(self, stamp: Callable[[], object], *, what: str = "builder",
                 interval: float = HEARTBEAT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 on_failure: Callable[[str], None] | None = None,
                 stamped: bool = False) -> None:
        self.stamp = stamp
        self.what = what
        self.interval = interval
        self.clock = clock
        self.on_failure = on_failure
        # ``stamped``: the caller has just stamped it; the first poll need not.
        self.last: float | None = clock() if stamped else None
        self.sent = 0
        self.failing = False

    def maybe_beat(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            return False
        try:
            self.stamp()
        except Exception as exc:  # transient API trouble: try again next poll
            message = f"could not refresh the {self.what} heartbeat: {exc}"
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
    on_stale: Callable[[str], None] | None = None,
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
                          sleep=clock.sleep, pace=clock.scale, on_stale=on_stale)
        yield lock
    finally:
        lock.release()
