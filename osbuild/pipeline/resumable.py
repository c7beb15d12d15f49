"""What a step leaves in the state file for `osbuild resume`, and how it takes it back.

The runner stores ``step.record(ctx)`` under the step's name in the state file when the step
finishes (a step may also record progress while it runs, with ``ctx.save_record``). A resumed
build hands every step of the list what the dead run left (:class:`Saved`) and runs whatever
``step.resume`` returns: resume itself knows no step by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from osbuild.pipeline.context import BuildContext
    from osbuild.pipeline.runner import Step


class StartOver(Exception):
    """A step that cannot be taken back: the build starts over under its id."""


@dataclass(frozen=True)
class Saved:
    """What the dead run left about one step."""

    done: bool
    # The step's own record: what it returned from ``record`` or saved while running.
    record: Mapping[str, Any] = field(default_factory=dict)
    # Everything the build created, ``kind:role`` -> id (see ``context.state_key``).
    resources: Mapping[str, str] = field(default_factory=dict)
    # ``kind:role`` keys of what a step deleted on purpose before the end (``delete_now``).
    released: frozenset[str] = frozenset()

    def resource(self, kind: str, role: str) -> str | None:
        """The id recorded for ``kind:role``; a resource recreated after an error carries
        ``-2`` and is the one in use."""
        return self.resources.get(f"{kind}:{role}-2") or self.resources.get(f"{kind}:{role}")

    def was_released(self, kind: str, role: str) -> bool:
        """Whether a step deleted ``kind:role`` on purpose (its absence is no loss)."""
        return bool({f"{kind}:{role}", f"{kind}:{role}-2"} & self.released)


@runtime_checkable
class Resumable(Protocol):
    """A step of the build. Subclass it for the defaults: records nothing, and a resumed
    build skips it if it had finished and runs it (again) if not."""

    name: str

    def run(self, ctx: BuildContext) -> None: ...

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        """JSON-able facts a resumed build needs from this step (never a secret)."""
        return {}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        """Fill ``ctx`` from ``saved``; the step to run in this one's place, or None to skip.

        Raise :class:`StartOver` when the build cannot go on from what is saved.
        """
        return None if saved.done else self
