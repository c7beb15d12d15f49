"""The build's events on its own time axis (cloud seconds since start), for the report."""

from __future__ import annotations

import threading
from typing import Any

from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import Event, EventName

# What the HTML report draws: steps, guest markers, resources coming and going, trouble.
_KEPT = {EventName.STEP_STARTED, EventName.STEP_FINISHED, EventName.STEP_FAILED, EventName.STAGE,
         EventName.RESOURCE_CREATED, EventName.RESOURCE_ADOPTED, EventName.RESOURCE_DELETED,
         EventName.CLEANUP_FAILED, EventName.VERIFY_PASSED, EventName.VERIFY_FAILED,
         EventName.VERIFY_SKIPPED, EventName.IMAGE_PROMOTED, EventName.IMAGE_ROTATED,
         EventName.WARNING, EventName.INFO}
# Event fields that are already on the entry or say nothing on a time axis.
_DROPPED = {"elapsed", "details"}


class TimelineRecorder:
    """A bus listener: one entry per interesting event of one build, stamped with
    ``ctx.elapsed()``: the cloud's clock, whose pace may differ from the wall's."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if event.build_id != self.ctx.build_id or event.name not in _KEPT:
            return
        fields = {k: v for k, v in event.fields.items() if k not in _DROPPED}
        # `during`: the step running then ("cleanup" once the runner deletes what steps made).
        entry = {"at": round(self.ctx.elapsed(), 1), "event": str(event.name),
                 "during": self.ctx.current_step, **fields}
        with self._lock:
            self.entries.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.entries)
