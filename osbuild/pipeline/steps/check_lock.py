"""After booting: back out if an earlier build of the family also got past the lock."""

from __future__ import annotations

from osbuild.errors import LockBusy
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.resumable import Resumable
from osbuild.unattended.lock import yield_to


class CheckLock(Resumable):
    """Two hosts can pass the cloud guard at the same moment: the build whose builder Nova
    created later yields (``lock.yield_to``). Builds of this osbuild settled that at their
    claim already (steps.claim_family); this catches a race with an osbuild that makes no
    claim (another host not yet upgraded).

    Only builds that took the family lock (``options.lock_family``) take part.
    """

    name = "lock-check"

    def run(self, ctx: BuildContext) -> None:
        if not ctx.options.lock_family:
            return
        other = ctx.call(yield_to, ctx.conn, family=ctx.spec.name, build_id=ctx.build_id)
        if other is not None:
            raise LockBusy(
                f"already being built by build {other.build_id} "
                f"(builder {other.server_id}), whose builder was created first; skipping",
                build_id=other.build_id,
            )
