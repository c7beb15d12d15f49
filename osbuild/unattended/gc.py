"""Garbage collection: remove what dead builds left in Nova, Neutron, Cinder and Glance."""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from osbuild import naming
from osbuild.cloud import compute, network
from osbuild.cloud import delete as cloud_delete
from osbuild.cloud import images as image_api
from osbuild.cloud import volumes as volume_api
from osbuild.durations import format_duration
from osbuild.errors import EXIT_BUILD_FAILED, OsbuildError
from osbuild.images.family import VERIFY_PENDING
from osbuild.unattended import lock
from osbuild.unattended.fingerprint import PROP_BUILD_TIME
from osbuild.unattended.process import osbuild_alive, pid_alive
from osbuild.unattended.state import PARENT_RECORD, BuildState, BuildStatus, StateStore

log = logging.getLogger(__name__)

Kind = Literal["server", "port", "volume", "image", "keypair"]
# Dependency order: a server pins its ports and volumes; images and keypairs are free.
ORDER: tuple[Kind, ...] = ("server", "port", "volume", "image", "keypair")

# The captured image keeps this role until publish renames it and adds provenance.
_OUTPUT_ROLE = "image"


@dataclass(frozen=True)
class Resource:
    kind: Kind
    id: str
    name: str
    build_id: str
    age_seconds: float
    status: str | None = None


# Why gc kept something: a running build's; younger than --older-than, a dead build's that
# `osbuild resume` could still finish (its state here says running) or another's; or a
# published image (the product, kept at every run).
KeptFor = Literal["running", "resume", "young", "published"]


@dataclass(frozen=True)
class Kept:
    resource: Resource
    reason: str
    kept_for: KeptFor = "published"


@dataclass(frozen=True)
class Failed:
    resource: Resource
    error: str


@dataclass
class GcResult:
    dry_run: bool
    older_than: float
    removed: list[Resource] = field(default_factory=list)  # or, dry run, would remove
    kept: list[Kept] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    abandoned_builds: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than_seconds": self.older_than,
            "removed": [asdict(r) for r in self.removed],
            "kept": [{**asdict(k.resource), "reason": k.reason, "kept_for": k.kept_for}
                     for k in self.kept],
            "failed": [{**asdict(f.resource), "error": f.error} for f in self.failed],
            "abandoned_builds": self.abandoned_builds,
        }


def build_time(build_id: str) -> datetime | None:
    try:
        return datetime.strptime(build_id[:15], "%Y%m%dt%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _age(created: Any, build_id: str, now: datetime) -> float:
    """From the resource's own creation time, else from the time in its build id."""
    when: datetime | None = None
    if isinstance(created, datetime):
        when = created
    elif isinstance(created, str) and created:
        try:
            when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            when = None
    if when is None:
        when = build_time(build_id)
    if when is None:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds()


def _build_id_of(name: str | None, labels: Mapping[str, Any] | None) -> str | None:
    value = (labels or {}).get(naming.PROP_BUILD_ID)
    if isinstance(value, str) and naming.is_build_id(value):
        return value
    parsed = naming.parse_resource_name(name or "")
    return parsed[0] if parsed else None


# --------------------------------------------------------------------------- liveness


@dataclass(frozen=True)
class Liveness:
    """Decides whether a build is still running, from local state and cloud heartbeats."""

    states: dict[str, BuildState]
    fresh_heartbeats: frozenset[str]
    now: datetime
    stale_after: float = lock.STALE_AFTER
    hostname: str = field(default_factory=socket.gethostname)
    pid_alive: Callable[[int], bool] = pid_alive

    def running(self, build_id: str) -> str | None:
        """Why the build counts as running, or None when it does not."""
        state = self.states.get(build_id)
        if state is not None and state.is_finished:
            return None
        if state is not None:
            here = osbuild_alive(state, hostname=self.hostname, alive=self.pid_alive)
            if here is not None:
                # Local knowledge beats a heartbeat the dead process stamped a minute ago.
                return f"build {build_id} is running (pid {state.pid})" if here else None
        if build_id in self.fresh_heartbeats:
            return f"build {build_id} is running (fresh heartbeat on its builder or claim)"
        if state is not None:
            age = (self.now - state.updated_at).total_seconds()
            if age <= self.stale_after:
                return (f"build {build_id} is running on {state.host} "
                        f"(state updated {format_duration(age)} ago)")
        return None


# --------------------------------------------------------------------------- discovery


def discover(conn: Any, now: datetime) -> tuple[list[Resource], dict[str, Any], frozenset[str]]:
    """Everything that follows osbuild's naming conventions, the images' properties, and
    the build ids whose builder or family claim has a fresh heartbeat."""
    found: list[Resource] = []
    image_props: dict[str, Any] = {}
    fresh: set[str] = set()
    server_ids: set[str] = set()

    for server in compute.servers(conn, tag=naming.TAG):
        build_id = _build_id_of(server.name, server.metadata)
        if build_id is None:
            continue
        beat = lock.parse_heartbeat(server.metadata.get(naming.PROP_HEARTBEAT))
        if lock.is_fresh(beat, now):
            fresh.add(build_id)
        server_ids.add(server.id)
        found.append(Resource("server", server.id, server.name, build_id,
                              _age(server.created_at, build_id, now), server.status))

    seen_ports: set[str] = set()
    for builder in [r for r in found if r.kind == "server"]:
        for port in network.ports(conn, device_id=builder.id):
            seen_ports.add(port.id)
            found.append(Resource("port", port.id, port.name or "", builder.build_id,
                                  _age(port.created_at, builder.build_id, now), port.status))
    for port in network.ports(conn):
        build_id = _build_id_of(port.name, None)
        if build_id is None or port.id in seen_ports:
            continue
        found.append(Resource("port", port.id, port.name, build_id,
                              _age(port.created_at, build_id, now), port.status))

    for volume in volume_api.volumes(conn):
        build_id = _build_id_of(volume.name, volume.metadata)
        if build_id is None:
            continue
        found.append(Resource("volume", volume.id, volume.name, build_id,
                              _age(volume.created_at, build_id, now), volume.status))

    images: dict[str, image_api.Image] = {}
    # Glance leaves hidden images out of the default listing; the config ISO is hidden.
    for listing in (image_api.images(conn), image_api.images(conn, is_hidden=True)):
        for image in listing:
            images[image.id] = image
    for image in images.values():
        props = dict(image.properties)
        build_id = _build_id_of(image.name, props)
        if build_id is None:
            continue
        if props.get(naming.PROP_ROLE) == lock.CLAIM_ROLE and lock.is_fresh(
                lock.parse_heartbeat(str(props.get(naming.PROP_HEARTBEAT) or "")), now):
            fresh.add(build_id)  # a build past its builder (capture, boot test) claims on
        image_props[image.id] = {**props, "tags": list(image.tags),
                                 "is_protected": image.protected}
        found.append(Resource("image", image.id, image.name, build_id,
                              _age(image.created_at, build_id, now), image.status))

    for keypair in compute.keypairs(conn):
        parsed = naming.parse_resource_name(keypair.name)
        if parsed is None:
            continue
        build_id = parsed[0]
        found.append(Resource("keypair", keypair.name, keypair.name, build_id,
                              _age(keypair.created_at, build_id, now)))
    return found, image_props, frozenset(fresh)


def _image_keep_reason(resource: Resource, props: dict[str, Any],
                       states: dict[str, BuildState]) -> str | None:
    """Published images are the product, never garbage: rotation is `osbuild images`' job.
    One whose boot test never ended is not (its build died in verify): its run would have
    deleted it, and rotation leaves a `pending` image to the build it takes for running."""
    if naming.CURRENT_TAG in props.get("tags", []):
        return "the family's current image"
    if props.get("is_protected"):
        return "protected"
    if props.get(PROP_BUILD_TIME) and props.get(naming.PROP_VERIFY) != VERIFY_PENDING:
        return "a published image"
    state = states.get(resource.build_id)
    finished = state is not None and state.status is BuildStatus.SUCCEEDED
    if finished and state is not None and state.image_id == resource.id:
        return "the published image of a finished build"
    temporary_name = naming.parse_resource_name(resource.name) is not None
    role = props.get(naming.PROP_ROLE)
    if not temporary_name and (role is None or role == _OUTPUT_ROLE):
        return "not a temporary image (renamed by publish)"
    return None


# --------------------------------------------------------------------------- decisions


def decide(found: Iterable[Resource], image_props: Mapping[str, Any],
           states: dict[str, BuildState], live: Liveness,
           older_than: float) -> tuple[list[Kept], list[Resource]]:
    """What stays (and why) and what goes, in deletion order.

    A dead build's leftovers go together or not at all: its resources are minutes apart,
    and removing the older ones alone (the config image, a port) would break a build that
    `osbuild resume` could still finish, then mark it abandoned."""
    kept: list[Kept] = []
    candidates: list[Resource] = []
    for resource in found:
        reason = live.running(resource.build_id)
        if reason is not None:
            kept.append(Kept(resource, reason, "running"))
            continue
        if resource.kind == "image":
            reason = _image_keep_reason(resource, image_props.get(resource.id, {}), states)
        if reason is not None:
            kept.append(Kept(resource, reason, "published"))
        else:
            candidates.append(resource)
    newest: dict[str, float] = {}
    for resource in candidates:
        newest[resource.build_id] = min(resource.age_seconds,
                                        newest.get(resource.build_id, resource.age_seconds))
    doomed: list[Resource] = []
    young = f"younger than {format_duration(older_than)}"
    def young_for(build_id: str) -> KeptFor:
        state = states.get(build_id)
        return "resume" if state is not None and not state.is_finished else "young"

    for resource in candidates:
        # 0 means any age: also resources whose creation time is ahead of our clock.
        if older_than <= 0 or newest[resource.build_id] >= older_than:
            doomed.append(resource)
        elif resource.age_seconds < older_than:
            kept.append(Kept(resource, young, young_for(resource.build_id)))
        else:
            kept.append(Kept(resource, f"{young} (its build's newest resource is "
                                       f"{format_duration(max(0.0, newest[resource.build_id]))}"
                                       " old)", young_for(resource.build_id)))
    doomed.sort(key=lambda r: (ORDER.index(r.kind), r.build_id, r.id))
    return kept, doomed


# --------------------------------------------------------------------------- collection


def collect(
    conn: Any,
    *,
    older_than: float = naming.GC_OLDER_THAN,
    dry_run: bool = False,
    store: StateStore | None = None,
    now: datetime | None = None,
    liveness: Callable[[dict[str, BuildState], frozenset[str], datetime], Liveness] | None = None,
    cloud: str | None = None,
) -> GcResult:
    """Find osbuild's leftovers older than ``older_than`` seconds that belong to no running
    build and delete them in dependency order (``dry_run``: only list them). ``cloud``: the
    cloud's name in the state files, whose dead builds with nothing left in it are marked
    failed too (another host's gc removed what they left)."""
    now = now or datetime.now(UTC)
    states = {s.build_id: s for s in (store.list() if store else [])}
    found, image_props, fresh = discover(conn, now)
    live = (liveness or Liveness)(states, fresh, now)
    result = GcResult(dry_run=dry_run, older_than=older_than)
    result.kept, doomed = decide(found, image_props, states, live, older_than)
    if dry_run:
        result.removed = doomed
        return result

    for resource in doomed:
        try:
            _delete(conn, resource)
        except Exception as exc:
            log.debug("gc: deleting %s %s failed", resource.kind, resource.id, exc_info=True)
            result.failed.append(Failed(resource, _describe(exc)))
        else:
            result.removed.append(resource)
            log.info("gc: removed %s %s (%s)", resource.kind, resource.id, resource.name)
    if store is not None:
        result.abandoned_builds = _mark_abandoned(store, states, doomed, result.failed, live)
        if cloud is not None:
            result.abandoned_builds += _retire_emptied(
                store, [s for s in states.values() if s.cloud == cloud],
                {r.build_id for r in found}, live, older_than, now)
    return result


def _delete(conn: Any, resource: Resource) -> None:
    if resource.kind == "server":
        cloud_delete.delete_server(conn, resource.id)
    elif resource.kind == "port":
        network.delete_port(conn, resource.id)
    elif resource.kind == "volume":
        cloud_delete.delete_volume(conn, resource.id)
    elif resource.kind == "image":
        cloud_delete.delete_image(conn, resource.id)
    else:
        cloud_delete.delete_keypair(conn, resource.id)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _mark_abandoned(store: StateStore, states: dict[str, BuildState],
                    doomed: Iterable[Resource], failed: list[Failed],
                    live: Liveness) -> list[str]:
    """A dead build whose resources are gone can no longer be resumed: say so in its state,
    and remove the rendered media it left on this host (the answer file with its password,
    which only a resume would have read)."""
    failed_builds = {f.resource.build_id for f in failed}
    out = []
    for build_id in sorted({r.build_id for r in doomed} - failed_builds):
        state = states.get(build_id)
        if state is None or state.is_finished or live.running(build_id):
            continue
        error = "abandoned; its resources were removed by osbuild gc"
        store.finish(build_id, BuildStatus.FAILED, error=error,
                     at=state.updated_at)  # it ended when its osbuild died, not now
        _remove_media(state)
        _notify_abandoned(state, error)
        out.append(build_id)
    return out


def _retire_emptied(store: StateStore, states: Iterable[BuildState], in_cloud: set[str],
                    live: Liveness, older_than: float, now: datetime) -> list[str]:
    """Dead builds of this cloud of which nothing is left in it, their state untouched for
    ``older_than``: marked failed, their media removed. A resume has nothing to go on."""
    out = []
    for state in sorted(states, key=lambda s: s.build_id):
        if (state.is_finished or state.build_id in in_cloud or live.running(state.build_id)
                or (now - state.updated_at).total_seconds() < older_than):
            continue
        error = "abandoned; nothing of it was left in the cloud (osbuild gc)"
        store.finish(state.build_id, BuildStatus.FAILED, error=error, at=state.updated_at)
        _remove_media(state)
        _notify_abandoned(state, error)
        out.append(state.build_id)
    return out


def _notify_abandoned(state: BuildState, error: str) -> None:
    """The webhook of a build whose osbuild died (a SIGKILL, a reboot, the OOM killer) was
    never sent: its run had no end to tell. Retiring it is that end, so the spec's webhook
    hears of it now, as a failure (cron's alerts read webhooks, not exit codes). Nothing is
    sent when the spec is gone or no longer this family's."""
    from osbuild.spec import load_spec
    from osbuild.unattended import notify

    if state.host != socket.gethostname():
        return  # another host's build: its own gc tells
    try:
        spec = load_spec(state.spec_path)
    except (OsbuildError, OSError):
        log.info("gc: no webhook for abandoned build %s: its spec %s cannot be read",
                 state.build_id, state.spec_path)
        return
    if spec.name != state.family or spec.notify is None \
            or not notify.should_notify(spec.notify.on, succeeded=False):
        return
    where = f" in step {state.step}" if state.step else ""
    summary = notify.build_summary(
        build_id=state.build_id, family=state.family, cloud=state.cloud or "default",
        succeeded=False, reason=f"its osbuild (pid {state.pid}) died{where}; {error}",
        stage=state.step, exit_code=EXIT_BUILD_FAILED, finished_at=state.updated_at,
        # The keys every other webhook has (jobs.report_outcome), whatever is unknown here.
        extra={"abandoned": True, "kind": "refresh" if state.is_refresh else "full",
               "interrupted": False, "report": None, "kept": [],
               "parent_image_id": (state.records.get(PARENT_RECORD) or {}).get("image_id"),
               "resumed_duration_seconds": None})
    sent = notify.send(spec.notify.url, summary)
    if not sent.delivered:
        log.warning("gc: webhook for abandoned build %s not delivered after %d attempt(s): "
                    "%s", state.build_id, sent.attempts, sent.error)


def _remove_media(state: BuildState) -> None:
    if not state.log_dir or state.host != socket.gethostname():
        return
    media = Path(state.log_dir) / state.build_id / naming.MEDIA_DIR
    if media.is_dir():
        shutil.rmtree(media, ignore_errors=True)
        log.info("gc: removed %s (the abandoned build's config media)", media)
