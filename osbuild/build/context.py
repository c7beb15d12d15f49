"""The typed state a build carries from step to step, and the resources it has created."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from openstack.connection import Connection

from osbuild.build.clock import CancelToken, Clock
from osbuild.build.events import Event, EventBus
from osbuild.cloud.retry import retrying
from osbuild.spec import BuildSpec

if TYPE_CHECKING:
    from osbuild.build.steps.preflight import Resolved
    from osbuild.media.render import RenderedMedia

T = TypeVar("T")


@dataclass(frozen=True)
class BuildOptions:
    """How to run, as opposed to what to build (that is the spec)."""

    log_dir: Path
    keep_on_failure: bool = False
    # Cloud time runs this much faster than real time (simulated clouds only).
    time_scale: float = 1.0
    # Console poll interval bounds, in cloud seconds.
    poll_min: float = 5.0
    poll_max: float = 60.0
    # How often the builder's heartbeat metadata is refreshed (cloud seconds).
    heartbeat_every: float = 300.0


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

    def label(self) -> str:
        return f"{self.kind} {self.id} ({self.name})"


@dataclass
class BuilderVolumes:
    windows_iso: str
    virtio_iso: str
    config_iso: str
    target: str | None = None  # volume target only


@dataclass
class StageRecord:
    stage: str
    started: float  # cloud seconds since build start
    finished: float | None = None
    status: str = "running"
    detail: str = ""


@dataclass
class BuildContext:
    spec: BuildSpec
    build_id: str
    conn: Connection
    cloud_name: str | None
    options: BuildOptions
    bus: EventBus
    cancel: CancelToken = field(default_factory=CancelToken)
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
    stages: list[StageRecord] = field(default_factory=list)
    step_timings: dict[str, float] = field(default_factory=dict)
    console_bytes: int = 0
    console_polls: int = 0
    resources: list[TrackedResource] = field(default_factory=list)
    current_step: str = ""
    started_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def clock(self) -> Clock:
        return Clock(self.options.time_scale)

    @property
    def workdir(self) -> Path:
        path = self.options.log_dir / self.build_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def elapsed(self) -> float:
        return self.clock.now() - self.started_at

    def emit(self, event_name: str, /, **fields: Any) -> None:
        self.bus.publish(Event(event_name, self.build_id, self.spec.name, fields))

    def track(self, kind: str, resource_id: str, name: str, delete: Callable[[], None], *,
              keep_on_success: bool = False) -> TrackedResource:
        """Record a created resource the moment its id is known (before any wait)."""
        resource = TrackedResource(kind, resource_id, name, self.current_step, delete,
                                   keep_on_success)
        with self._lock:
            self.resources.append(resource)
        self.emit("resource.created", kind=kind, id=resource_id, name=name)
        return resource

    def find_resource(self, kind: str, resource_id: str) -> TrackedResource | None:
        for resource in self.resources:
            if resource.kind == kind and resource.id == resource_id:
                return resource
        return None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """An idempotent API call, repeated on transient failures."""
        return retrying(fn, *args, time_scale=self.options.time_scale,
                        cancel=self.cancel.event, **kwargs)

    def require(self, value: T | None, what: str) -> T:
        if value is None:
            raise RuntimeError(f"step order bug: {what} is not set before {self.current_step}")
        return value
