"""Creating a resource safely: a create call is repeated only after looking it up.

POST is not idempotent: a create that timed out or got a 5xx may still have happened. Before
trying again, look for the resource by its unique build-scoped name or tag and adopt it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from osbuild.cloud.retry import is_transient
from osbuild.errors import BuildFailed, describe
from osbuild.pipeline.context import BuildContext

T = TypeVar("T")


def create_behind_lookup(ctx: BuildContext, create: Callable[[], T],
                         lookup: Callable[[], T | None], *, what: str,
                         attempts: int = 4) -> T:
    last: Exception | None = None
    for attempt in range(attempts):
        ctx.cancel.check()
        try:
            return create()
        except Exception as exc:
            if not is_transient(exc):
                raise
            last = exc
        found = lookup()  # a read of osbuild/cloud: it retries on its own
        if found is not None:
            return found
        ctx.pause(min(2.0 * 2**attempt, 30.0))
    reason = describe(last) if last is not None else "no answer"
    raise BuildFailed(f"could not create {what} ({attempts} attempts): {reason}",
                      stage=ctx.current_step) from last
