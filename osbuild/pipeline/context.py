"""The typed state a build carries from step to step, and the resources it has created."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from osbuild import redact
from osbuild.cloud.clock import CancelToken, Clock, session_clock
from osbuild.cloud.connect import Connection
from osbuild.cloud.retry import retrying
from osbuild.pipeline.events import Event, EventBus, EventName
from osbuild.redact import Redactor
from osbuild.spec import BuildSpec
from osbuild.unattended.lock import HEARTBEAT_INTERVAL, Heartbeat

if TYPE_CHECKING:
    from osbuild.images.refresh import Parent
    from osbuild.media.render import RenderedMedia
    from osbuild.pipeline.steps.preflight import Resolved
    from osbuild.unattended.state import StateStore

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """How to run, as opposed to what to build (that is the spec)."""

    log_dir: Path
    keep_on_failure: bool = False
    # Console poll interval bounds, in cloud seconds.
    poll_min: float = 5.0
    poll_max: float = 60.0
    # The longest pause between two reads of a resource's status (cloud seconds). A status
    # read is one small GET (a console read can be hundreds of lines), and every pause is
    # time the build may sit idle after the cloud is done: at the console's 60 s a capture
    # was seen about 55 s after its image went active. openstacksdk's own waiters poll
    # every 2 s.
    status_poll_max: float = 15.0
    # How often the builder's heartbeat metadata is refreshed (cloud seconds); well inside
    # the time after which other hosts and gc consider a heartbeat stale.
    heartbeat_every: float = HEARTBEAT_INTERVAL
    # Where the durable build state goes (None: no state, e.g. library use in tests).
    state_dir: Path | None = None
    # The caller holds the family lock: the build claims the family in the cloud and yields
    # to an earlier racing build.
    lock_family: bool = False


@dataclass
class TrackedResource:
    """Something a step created; the runner deletes it in reverse order unless kept."""

    kind: str
    id: str
    name: str
    step: str
    delete: Callable[[], None]
    keep_on_success: bool = False
    # Kept when the build fails too: an image that failed its boot test, kept hidden.
    keep_on_failure: bool = False
    done: bool = False  # deleted already, by its step or a later one
    # What makes it stop looking like a build in progress when --keep-on-failure keeps it.
    on_keep: Callable[[], None] | None = None
    # Only the cleanup at the end deletes it, no step before: the family claim.
    until_end: bool = False

    def label(self) -> str:
        return f"{self.kind} {self.id} ({self.name})"


@dataclass(frozen=True)
class MediaFacts:
    """What the cloud steps need from the rendered media; a resumed build has only these."""

    nonce: str
    guest_stages: tuple[str, ...]
    size: int


@dataclass
class BuilderVolumes:
    windows_iso: str | None  # None: a refresh, which installs nothing
    virtio_iso: str | None
    config_iso: str
    target: str | None = None  # volume target only


@dataclass
class StageRecord:
    stage: str
    started: float  # cloud seconds since build start
    finished: float | None = None
    status: str = "running"
    detail: str = ""
    # The guest's `info` markers in this stage (update passes, retries, settling reboots).
    info: list[str] = field(default_factory=list)


@dataclass
class BuildContext:
    spec: BuildSpec
    build_id: str
    conn: Connection
    # The cloud's identity: its clouds.yaml name, or auth URL + project + region.
    cloud_name: str | None
    options: BuildOptions
    bus: EventBus
    cancel: CancelToken = field(default_factory=CancelToken)
    # The current image a refresh patches (None: a full build from the ISO).
    parent: Parent | None = None
    kind_reason: str = ""  # why a refresh or a full build
    # Step outputs, filled in as the build goes.
    media: RenderedMedia | None = None
    resolved: Resolved | None = None
    config_image_id: str | None = None
    volumes: BuilderVolumes | None = None
    root_image_id: str | None = None
    server_id: str | None = None
    sysprep_reached: bool = False
    image_id: str | None = None
    image_name: str | None = None
    image_properties: dict[str, str] = field(default_factory=dict)
    # An existing image's own min_disk (`osbuild images verify`: a refresh's may exceed the
    # spec's).
    image_found_min_disk: int = 0
    # While the install watcher runs: an interrupt names the guest's stage too.
    watching_guest: bool = False
    # What the promotion's rotation did to older images of the family (image_id,
    # image_name, action: hide or delete, reason): the report and the summary say it.
    rotated: list[dict[str, str]] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)
    step_timings: dict[str, float] = field(default_factory=dict)
    console_bytes: int = 0
    console_polls: int = 0
    resources: list[TrackedResource] = field(default_factory=list)
    current_step: str = ""
    # When the build first started, on ``clock`` (a resumed build's: before this process
    # began; may be negative). Its elapsed time and builder.timeout count from here.
    started_at: float = 0.0
    # Durable state (unattended.state) and what a resumed build restored instead of rendering.
    store: StateStore | None = None
    resumed_media: MediaFacts | None = None
    # The guest stage the dead run had last seen a marker of (a resumed build goes on there).
    resumed_stage: str | None = None
    fingerprint: str | None = None
    # The family claim's heartbeat (steps.claim_family), refreshed from every wait (pause).
    claim: Heartbeat | None = None
    # The clouds.yaml name to connect with (None or "": the OS_* variables).
    os_cloud: str | None = None
    # The build's secrets (spec, Windows password, credentials): every sink passes its text
    # through this. In memory only, never saved.
    redactor: Redactor = field(default_factory=redact.for_build, repr=False)
    _state_warned: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def clock(self) -> Clock:
        return session_clock(self.conn)

    @property
    def workdir(self) -> Path:
        path = self.options.log_dir / self.build_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pause(self, seconds: float) -> None:
        """Every wait of the build sleeps here: the family claim's heartbeat stays fresh
        however long a step waits, and Ctrl-C cuts the sleep short."""
        if self.claim is not None:
            self.claim.maybe_beat()
        self.clock.sleep(seconds, self.cancel)

    def elapsed(self) -> float:
        return self.clock.now() - self.started_at

    def emit(self, event_name: EventName, /, *, at_elapsed: float | None = None,
             **fields: Any) -> None:
        """Publish an event; ``at_elapsed`` stamps it with that point of the build's clock
        instead of now (the end of a build, announced after its report was written)."""
        if at_elapsed is None and self.started_at:
            at_elapsed = self.elapsed()
        self.bus.publish(Event(event_name, self.build_id, self.spec.name,
                               self.redactor.deep(fields), elapsed=at_elapsed))

    def media_facts(self) -> MediaFacts:
        if self.media is not None:
            return MediaFacts(self.media.nonce, tuple(self.media.plan.stages), self.media.size)
        return self.require(self.resumed_media, "media")

    def track(self, kind: str, resource_id: str, name: str, delete: Callable[[], None], *,
              keep_on_success: bool = False, announce: bool = True) -> TrackedResource:
        """Record a created resource the moment its id is known (before any wait).

        With a state store, the id is also written to the build's state file at once, so a
        resumed build or gc can find it after a crash.
        """
        key = state_key(self.build_id, kind, name)
        if kind != "local":
            self.save_state_resource(key, resource_id)

        def delete_and_forget() -> None:
            delete()
            if kind != "local":
                self.save_state_resource(key, None)

        resource = TrackedResource(kind, resource_id, name, self.current_step,
                                   delete_and_forget, keep_on_success)
        with self._lock:
            self.resources.append(resource)
        if announce:
            self.emit(EventName.RESOURCE_CREATED, kind=kind, id=resource_id, name=name)
        return resource

    def save_state(self, **changes: Any) -> None:
        """Update the durable state; a state write failing must not fail the build."""
        if self.store is None:
            return
        try:
            self.store.update(self.build_id, **self.redactor.deep(changes))
        except Exception as exc:
            self._state_trouble(exc)

    def save_record(self, step: str, **facts: Any) -> None:
        """Merge ``facts`` into what ``step`` leaves a resumed build (see pipeline.resumable)."""
        if self.store is None:
            return
        try:
            self.store.save_record(self.build_id, step, self.redactor.deep(facts))
        except Exception as exc:
            self._state_trouble(exc)

    def save_state_resource(self, key: str, resource_id: str | None) -> None:
        if self.store is None:
            return
        try:
            if resource_id is None:
                self.store.forget_resource(self.build_id, key)
            else:
                self.store.record_resource(self.build_id, key, resource_id)
        except Exception as exc:
            self._state_trouble(exc)

    def _state_trouble(self, exc: Exception) -> None:
        log.debug("writing the build state failed", exc_info=True)
        if not self._state_warned:
            self._state_warned = True
            self.emit(EventName.WARNING, message=f"could not write the build state: {exc}")

    def delete_now(self, resource: TrackedResource) -> None:
        """Delete a tracked resource before the build ends: its step is done with it. The
        state notes the release, so a resumed build does not miss it."""
        resource.delete()
        resource.done = True
        if resource.kind != "local" and self.store is not None:
            try:
                self.store.release_resource(
                    self.build_id, state_key(self.build_id, resource.kind, resource.name))
            except Exception as exc:
                self._state_trouble(exc)
        self.emit(EventName.RESOURCE_DELETED, kind=resource.kind, id=resource.id,
                  name=resource.name)

    def find_resource(self, kind: str, resource_id: str) -> TrackedResource | None:
        for resource in self.resources:
            if resource.kind == kind and resource.id == resource_id:
                return resource
        return None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """An idempotent API call, repeated on transient failures."""
        return retrying(fn, *args, clock=self.clock,
                        cancel=self.cancel.event, **kwargs)

    @property
    def refresh_disk_gb(self) -> int:
        """A refresh's target disk: a copy of the parent image, at least its size."""
        parent = self.require(self.parent, "parent")
        return max(self.spec.builder.disk_gb, parent.min_disk)

    @property
    def image_min_disk_gb(self) -> int:
        """The image's Glance min_disk, and the boot test's root volume size: the spec's, and
        for a refresh at least its disk's (capture keeps a disk's size, and Cinder refuses a
        volume smaller than an image's virtual size: cinder/volume/volume_utils.py
        check_image_metadata)."""
        size = max(self.spec.min_disk_gb, self.image_found_min_disk)
        return size if self.parent is None else max(size, self.refresh_disk_gb)

    def require(self, value: T | None, what: str) -> T:
        if value is None:
            raise RuntimeError(f"step order bug: {what} is not set before {self.current_step}")
        return value


def state_key(build_id: str, kind: str, name: str) -> str:
    """``kind:role`` from the build-scoped name (``osbuild-<id>-<role>``): unique per build."""
    prefix = f"osbuild-{build_id}-"
    role = name[len(prefix):] if name.startswith(prefix) else name
    return f"{kind}:{role}"
