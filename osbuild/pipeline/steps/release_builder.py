"""Delete what the builder used as soon as its disk is an image.

After capture the build needs only the image: the builder's server (a local target's; a
volume target's went at capture), its volumes (the ISOs, the config ISO, the target) and
the config ISO's image. Deleting them here rather than at the end frees their quota before
the boot test creates its own server and volume (preflight counts the larger of the two,
not their sum), and leaves less for a crash to strand. The rendered media stay to the end:
a resumed build reads its password from them, for redaction.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from osbuild.errors import describe
from osbuild.pipeline.context import BuildContext, TrackedResource
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable

log = logging.getLogger(__name__)


class ReleaseBuilder(Resumable):
    name = "release"

    def run(self, ctx: BuildContext) -> None:
        releasing = [r for r in reversed(ctx.resources)
                     if not (r.done or r.keep_on_success or r.until_end or r.kind == "local")]
        # The server first: its volumes cannot go while it holds them. Then the rest at
        # once: each deletion waits until the resource is gone (its quota back for the boot
        # test), and a backend that wipes deleted volumes (Cinder's LVM driver zeroes them
        # by default) takes minutes for the target alone.
        for resource in releasing:
            if resource.kind == "server":
                self._release(ctx, resource)
        rest = [r for r in releasing if r.kind != "server"]
        if rest:
            with ThreadPoolExecutor(max_workers=len(rest),
                                    thread_name_prefix="release") as pool:
                list(pool.map(lambda resource: self._release(ctx, resource), rest))

    @staticmethod
    def _release(ctx: BuildContext, resource: TrackedResource) -> None:
        try:
            ctx.delete_now(resource)
        except Exception as exc:
            # Not the build's failure: the resource stays tracked, and the cleanup at the
            # end tries again and reports it if it still stays.
            log.debug("early release of %s failed", resource.label(), exc_info=True)
            ctx.emit(EventName.WARNING,
                     message=f"could not delete {resource.label()} yet ({describe(exc)}); "
                             "the build's cleanup tries again")
