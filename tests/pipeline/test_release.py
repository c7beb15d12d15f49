"""The release step: the builder's server first, then its volumes and images all at once."""

from __future__ import annotations

import threading
from pathlib import Path

from osbuild.pipeline.events import EventName
from osbuild.pipeline.steps.release_builder import ReleaseBuilder
from tests.pipeline.test_runner import make_ctx


def test_the_server_goes_first_then_the_rest_at_once(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message")))
                      if e.name is EventName.WARNING else None)
    order: list[str] = []
    # Every volume and the config image wait for the others to be under way: deleted one
    # after another, the first would wait in vain (and the release would warn).
    together = threading.Barrier(5, timeout=10)

    def deleting(name: str, *, concurrent: bool) -> None:
        order.append(name)
        if concurrent:
            together.wait()

    ctx.track("image", "img-config", "osbuild-x-config",
              lambda: deleting("config image", concurrent=True))
    for role in ("iso", "virtio", "config", "target"):
        ctx.track("volume", f"vol-{role}", f"osbuild-x-{role}",
                  lambda role=role: deleting(f"{role} volume", concurrent=True))
    ctx.track("server", "srv", "osbuild-x-builder", lambda: deleting("server", concurrent=False))
    ctx.track("image", "img", "osbuild-x-image", lambda: deleting("image", concurrent=False),
              keep_on_success=True)

    ReleaseBuilder().run(ctx)

    assert warnings == []
    assert order[0] == "server"
    assert sorted(order[1:]) == sorted(["config image", "iso volume", "virtio volume",
                                        "config volume", "target volume"])
    assert [r.name for r in ctx.resources if not r.done] == ["osbuild-x-image"]


def test_a_deletion_that_fails_is_a_warning_and_stays_for_the_cleanup(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message")))
                      if e.name is EventName.WARNING else None)

    def refuse() -> None:
        raise RuntimeError("volume is busy")

    ctx.track("volume", "vol-iso", "osbuild-x-iso", refuse)
    ctx.track("volume", "vol-virtio", "osbuild-x-virtio", lambda: None)
    ReleaseBuilder().run(ctx)
    assert [r.name for r in ctx.resources if not r.done] == ["osbuild-x-iso"]
    [warning] = warnings
    assert warning.startswith("could not delete volume vol-iso (osbuild-x-iso) yet (")
    assert warning.endswith("the build's cleanup tries again")
