"""Build events: what the CLI renders live (terminal) or as JSON lines (cron, log shipping)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from osbuild import redact

log = logging.getLogger(__name__)

class EventName(StrEnum):
    """Every event a build emits: a contract for operators' log pipelines (README, Output)."""

    BUILD_STARTED = "build.started"
    BUILD_RESUMED = "build.resumed"
    BUILD_REBUILDING = "build.rebuilding"
    BUILD_SUCCEEDED = "build.succeeded"
    BUILD_FAILED = "build.failed"
    BUILD_SKIPPED = "build.skipped"
    STEP_STARTED = "step.started"
    STEP_FINISHED = "step.finished"
    STEP_FAILED = "step.failed"
    STAGE = "stage"
    RESOURCE_CREATED = "resource.created"
    RESOURCE_ADOPTED = "resource.adopted"
    RESOURCE_DELETED = "resource.deleted"
    CLEANUP_FAILED = "cleanup.failed"
    VERIFY_PASSED = "verify.passed"
    VERIFY_FAILED = "verify.failed"
    VERIFY_SKIPPED = "verify.skipped"
    IMAGE_PROMOTED = "image.promoted"
    IMAGE_ROTATED = "image.rotated"
    NOTIFY_SENT = "notify.sent"
    WARNING = "warning"
    INFO = "info"  # worth knowing, nothing wrong: shown in plain output, not as a warning
    # Not a build's: a command stopped on an error before it wrote any JSON (cli/jsonout.py).
    ERROR = "error"


@dataclass(frozen=True)
class Event:
    name: EventName
    build_id: str
    family: str
    fields: dict[str, Any]
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Seconds since the build started on its own clock (the cloud's pace, which the wall's
    # may not share), for views; None outside a build. Not an event field.
    elapsed: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "event": str(self.name),
            "time": self.time.isoformat(timespec="milliseconds"),
            # An event outside any build (error) has neither: null, not "".
            "build_id": self.build_id or None,
            "family": self.family or None,
            **self.fields,
        }


Listener = Callable[[Event], None]


class EventBus:
    """Fans events out to listeners (renderer, report); thread-safe for parallel builds."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        # Also events published outside a build's context (a build that never started).
        event = replace(event, fields=redact.PROCESS.deep(event.fields))
        with self._lock:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    # Whoever listens (a closed pipe, `| head`) must not stop the build, nor
                    # its cleanup halfway: the listener goes, the build and its report go on.
                    log.warning("an event listener failed; it hears no more events",
                                exc_info=True)
                    self._listeners.remove(listener)
