"""Runs a build's steps in order and guarantees reverse-order cleanup, whatever happens."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from osbuild.cloud.retry import api_message, is_quota_error
from osbuild.errors import (
    BuildFailed,
    CleanupIncomplete,
    Interrupted,
    OsbuildError,
    describe,
)
from osbuild.pipeline.context import BuildContext, TrackedResource
from osbuild.pipeline.events import EventName

log = logging.getLogger(__name__)

# Kinds kept for debugging with --keep-on-failure: what an operator looks at.
KEPT_ON_FAILURE = ("server", "volume")


class Step(Protocol):
    name: str

    def run(self, ctx: BuildContext) -> None: ...


@dataclass
class RunOutcome:
    error: OsbuildError | None
    leftovers: list[str]
    kept: list[str]
    # A signal that came during the last step, which finished anyway (promote is not cut
    # short halfway): the build succeeded, and the run still exits 130.
    late_signal: str | None = None
    # The step that was running, or whose turn it was, when the build stopped (None: the
    # steps all finished).
    step: str | None = None


def run_steps(steps: list[Step], ctx: BuildContext) -> RunOutcome:
    """Run ``steps``; then delete what they created in reverse order.

    On success, resources marked ``keep_on_success`` (the image) stay. On failure,
    interruption or an unexpected exception, everything goes, except the builder's server
    and volumes when ``--keep-on-failure`` asks to keep them.
    """
    error: OsbuildError | None = None
    running: str | None = None
    upcoming: str | None = None  # the step whose turn it is, started or not
    started = 0.0
    try:
        for step in steps:
            upcoming = step.name
            ctx.cancel.check()
            ctx.current_step = running = step.name
            started = ctx.clock.now()
            ctx.emit(EventName.STEP_STARTED, step=step.name)
            step.run(ctx)
            duration = ctx.clock.now() - started
            ctx.step_timings[step.name] = duration
            ctx.emit(EventName.STEP_FINISHED, step=step.name, duration=round(duration, 1))
            running = None
        upcoming = None
    except OsbuildError as exc:
        error = exc
    except KeyboardInterrupt:
        error = Interrupted("SIGINT")
    except Exception as exc:  # a bug or an unexpected API failure: still clean up
        log.debug("unexpected error in step %s", ctx.current_step, exc_info=True)
        if is_quota_error(exc):
            # Someone else used the quota up between preflight and this create.
            error = BuildFailed(f"over quota: {api_message(exc)}", stage=ctx.current_step)
        else:
            error = BuildFailed(describe(exc), stage=ctx.current_step)
        error.__cause__ = exc
    if error is not None and ctx.cancel.cancelled and not isinstance(error, Interrupted):
        # A wait or call cut short by the signal surfaced as some other error.
        error = Interrupted(ctx.cancel.signal_name)
    if isinstance(error, Interrupted) and error.where is None and upcoming is not None:
        # Say where, as a failure does: "interrupted by SIGINT while running the install step",
        # or "before the verify step" when the step it came in (publish) finished first.
        where = (f"while running the {running} step" if running
                 else f"before the {upcoming} step")
        stage = upcoming
        # In the guest's install, its stage too, as a guest failure names it (report's
        # failed_stage: `updates`, not `install`); between two stages, the one that ended.
        if running and ctx.watching_guest and ctx.stages:
            last = ctx.stages[-1]
            after = "" if last.finished is None else "after "
            where, stage = f"{where} ({after}guest stage {last.stage})", last.stage
        error = Interrupted(error.signal_name, where=where, stage=stage)
    if error is not None and running is not None:
        # Every step.started has its end in the stream: a log shipper pairs them.
        status = "interrupted" if isinstance(error, Interrupted) else "failed"
        ctx.emit(EventName.STEP_FAILED, step=running, status=status, reason=str(error),
                 duration=round(ctx.clock.now() - started, 1))
    if isinstance(error, Interrupted) and ctx.stages and ctx.stages[-1].finished is None:
        # The guest stage under way ends here, cut short: a finished report has nothing
        # "running" (its page drew the stage on past the builder's deletion).
        last = ctx.stages[-1]
        last.status, last.finished = "interrupted", ctx.elapsed()
    leftovers, kept = _clean_up(ctx, succeeded=error is None)
    # Also a signal during the cleanup of a build that succeeded (the family claim is
    # deleted last): it said "stopping and cleaning up", so it exits 130 as well.
    late_signal = ctx.cancel.signal_name if error is None and ctx.cancel.cancelled else None
    return RunOutcome(error, leftovers, kept, late_signal,
                      step=(running or upcoming) if error is not None else None)


def _clean_up(ctx: BuildContext, *, succeeded: bool) -> tuple[list[str], list[str]]:
    leftovers: list[str] = []
    kept: list[str] = []
    ctx.current_step = "cleanup"
    for resource in reversed(ctx.resources):
        if resource.done:
            continue
        if succeeded and resource.keep_on_success:
            continue
        if not succeeded and resource.keep_on_failure:
            kept.append(resource.label())
            continue
        if not succeeded and ctx.options.keep_on_failure and resource.kind in KEPT_ON_FAILURE:
            kept.append(resource.label())
            _settle_kept(ctx, resource)
            continue
        failure = _delete(ctx, resource)
        if failure is not None:
            advice = getattr(failure, "advice", None)  # what unsticks it (VolumeStuck)
            leftovers.append(f"{resource.label()}: {advice}" if advice else resource.label())
    return leftovers, kept


def _settle_kept(ctx: BuildContext, resource: TrackedResource) -> None:
    if resource.on_keep is None:
        return
    try:
        resource.on_keep()
    except Exception as exc:  # kept as it is: the build's outcome does not change
        log.debug("settling kept %s failed", resource.label(), exc_info=True)
        ctx.emit(EventName.WARNING, message=f"kept {resource.label()}: {describe(exc)}")


def _delete(ctx: BuildContext, resource: TrackedResource) -> Exception | None:
    """Deletes ``resource``; what failed, if it did."""
    # Cleanup is not cancellable: a second Ctrl-C must not leak what the first one spared.
    try:
        resource.delete()
    except KeyboardInterrupt:
        return _delete(ctx, resource)
    except Exception as exc:
        log.debug("cleanup of %s failed", resource.label(), exc_info=True)
        ctx.emit(EventName.CLEANUP_FAILED, kind=resource.kind, id=resource.id,
                 reason=describe(exc))
        return exc
    resource.done = True
    ctx.emit(EventName.RESOURCE_DELETED, kind=resource.kind, id=resource.id, name=resource.name)
    return None


def final_error(outcome: RunOutcome) -> OsbuildError | None:
    """What the build as a whole reports: its error, or incomplete cleanup."""
    if outcome.leftovers:
        return CleanupIncomplete(outcome.leftovers, cause=outcome.error)
    return outcome.error
