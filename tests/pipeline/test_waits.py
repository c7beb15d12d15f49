"""How long a build sits idle after the cloud has finished what it waits for."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from osbuild.cloud.clock import CancelToken, Clock, Deadline
from osbuild.errors import ResourceFailed, StageTimeout
from osbuild.pipeline.waits import wait_for_status
from tests.pipeline.test_runner import make_ctx


class _FakeClock:
    """Cloud time that only sleeping moves."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, cancel: CancelToken | None = None) -> None:
        if cancel is not None:
            cancel.check()
        self.sleeps.append(seconds)
        self.t += seconds


def _becomes(clock: _FakeClock, status: str, at: float) -> Any:
    """A fetch whose resource reads ``status`` from cloud second ``at`` on."""
    return lambda: SimpleNamespace(status=status if clock.t >= at else "uploading")


def _deadline(clock: _FakeClock, seconds: float) -> Deadline:
    return Deadline.after(cast(Clock, clock), seconds, "capture")


def _ctx(tmp_path: Path, **options: object) -> tuple[Any, _FakeClock]:
    """What a wait reads of a build: its options, clock, cancel token and step."""
    clock = _FakeClock()
    ctx = make_ctx(tmp_path, **options)
    return SimpleNamespace(options=ctx.options, clock=clock, cancel=ctx.cancel,
                           pause=lambda seconds: clock.sleep(seconds, ctx.cancel),
                           current_step="capture"), clock


@pytest.mark.parametrize("done_at", [4.0, 100.0, 245.0, 1800.0])
def test_a_finished_resource_is_seen_within_the_status_poll_cap(
        tmp_path: Path, done_at: float) -> None:
    # A capture of a 40 GB volume is active after about 245 cloud seconds (the simulator's
    # Cinder upload); with the console's 60 s cap between reads it was seen at 302.
    ctx, clock = _ctx(tmp_path)
    cap = ctx.options.status_poll_max
    deadline = _deadline(clock, 7200)
    resource = wait_for_status(ctx, _becomes(clock, "active", done_at),
                               want="active", failures=("killed",), deadline=deadline,
                               what="captured image")
    assert resource.status == "active"
    assert done_at <= clock.t <= done_at + cap
    assert max(clock.sleeps) <= cap
    # Backing off still keeps a long wait's reads few: one per cap once it has grown.
    assert len(clock.sleeps) <= done_at / cap + 5


def test_the_status_poll_cap_is_an_option(tmp_path: Path) -> None:
    ctx, clock = _ctx(tmp_path, status_poll_max=40.0)
    deadline = _deadline(clock, 7200)
    wait_for_status(ctx, _becomes(clock, "active", 600.0),
                    want="active", failures=(), deadline=deadline, what="x")
    assert max(clock.sleeps) == 40.0


def test_a_failure_status_and_the_deadline_end_the_wait(tmp_path: Path) -> None:
    ctx, clock = _ctx(tmp_path)
    deadline = _deadline(clock, 3600)
    with pytest.raises(ResourceFailed, match="captured image went to killed: quota"):
        wait_for_status(ctx, _becomes(clock, "killed", 50.0),
                        want="active", failures=("killed",), deadline=deadline,
                        what="captured image", on_failure=lambda _: "quota")
    ctx, clock = _ctx(tmp_path)
    deadline = _deadline(clock, 120)
    with pytest.raises(StageTimeout, match="captured image still uploading after 2m"):
        wait_for_status(ctx, _becomes(clock, "active", 10_000.0),
                        want="active", failures=(), deadline=deadline, what="captured image")
    assert clock.t == pytest.approx(120.0)  # the last pause stops at the deadline


def test_a_status_is_quoted_as_the_service_wrote_it(tmp_path: Path) -> None:
    # Nova's statuses are upper case: "still build" and "went to error" read like typos.
    ctx, clock = _ctx(tmp_path)
    with pytest.raises(StageTimeout, match="builder server s1 still BUILD after 2m"):
        wait_for_status(ctx, lambda: SimpleNamespace(status="BUILD"), want="active",
                        failures=("error",), deadline=_deadline(clock, 120),
                        what="builder server s1")
    with pytest.raises(ResourceFailed, match=r"builder server s1 went to ERROR$"):
        wait_for_status(ctx, lambda: SimpleNamespace(status="ERROR"), want="active",
                        failures=("error",), deadline=_deadline(clock, 120),
                        what="builder server s1")


def test_a_timeout_names_the_setting_that_sets_the_deadline(tmp_path: Path) -> None:
    # "builder server X still BUILD after 20m" left the operator to guess what to raise.
    ctx, clock = _ctx(tmp_path)
    deadline = Deadline.after(cast(Clock, clock), 1200, "server boot",
                              setting="builder.stage_timeouts.boot")
    with pytest.raises(StageTimeout) as caught:
        wait_for_status(ctx, _becomes(clock, "active", 10_000.0),
                        want="active", failures=(), deadline=deadline,
                        what="builder server s1")
    assert str(caught.value) == ("capture: builder server s1 still uploading after 20m "
                                 "(builder.stage_timeouts.boot)")
