"""Waiting for a resource's status, with a deadline and cancellation.

openstacksdk's own waiters (`wait_for_status`) sleep in a way nothing can interrupt; a build
must stop within a poll interval of Ctrl-C or SIGTERM, so this loop uses the build's
cancellable clock and the same status/failure semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osbuild.cloud.clock import Deadline
from osbuild.durations import format_duration
from osbuild.errors import BuildFailed, ResourceFailed, StageTimeout
from osbuild.pipeline.context import BuildContext


def wait_for_status(
    ctx: BuildContext,
    fetch: Callable[[], Any],
    *,
    want: str | tuple[str, ...],
    failures: tuple[str, ...],
    deadline: Deadline,
    what: str,
    on_failure: Callable[[Any], str] | None = None,
    interval: float | None = None,
    error: type[BuildFailed] = ResourceFailed,
) -> Any:
    """Poll ``fetch()`` (a read of osbuild/cloud, which retries on its own) until its
    ``status`` is in ``want``; raise on failure or deadline."""
    wanted = (want,) if isinstance(want, str) else want
    wanted = tuple(s.lower() for s in wanted)
    poll = interval if interval is not None else ctx.options.poll_min
    while True:
        resource = fetch()  # the cloud layer's reads retry on their own
        # Compared in lower case (Nova says ACTIVE, Cinder available), quoted as the
        # service wrote it: an operator searches the docs for BUILD, not "build".
        told = str(getattr(resource, "status", "") or "")
        status = told.lower()
        if status in wanted:
            return resource
        if status in failures:
            reason = on_failure(resource) if on_failure else ""
            raise error(
                f"{what} went to {told}" + (f": {reason}" if reason else ""),
                stage=ctx.current_step,
            )
        if deadline.expired:
            setting = f" ({deadline.setting})" if deadline.setting else ""
            raise StageTimeout(
                f"{what} still {told or 'unknown'} after {format_duration(deadline.seconds)}"
                f"{setting}",
                stage=ctx.current_step,
            )
        ctx.pause(min(poll, max(deadline.remaining(), 0.0)) or poll)
        poll = min(poll * 1.5, ctx.options.status_poll_max)
