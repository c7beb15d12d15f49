"""The build as a literal list of steps, and running one build from spec to image."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from osbuild import __version__
from osbuild.cloud.clock import CancelToken
from osbuild.cloud.connect import Connection, api_calls, auth_secrets
from osbuild.cloud.retry import reporting_unanswered
from osbuild.errors import (
    EXIT_INTERRUPTED,
    CleanupIncomplete,
    Interrupted,
    LockBusy,
    OsbuildError,
)
from osbuild.images.refresh import Choice, Parent, generation_made
from osbuild.naming import PROP_VERIFY, generation_of, new_build_id
from osbuild.pipeline.context import BuildContext, BuildOptions
from osbuild.pipeline.events import EventBus, EventName
from osbuild.pipeline.resumable import Resumable
from osbuild.pipeline.runner import Step, final_error, run_steps
from osbuild.pipeline.steps.boot_builder import BootBuilder
from osbuild.pipeline.steps.boot_from_parent import BootFromParent
from osbuild.pipeline.steps.capture_image import CaptureImage
from osbuild.pipeline.steps.check_lock import CheckLock
from osbuild.pipeline.steps.claim_family import ClaimFamily
from osbuild.pipeline.steps.create_refresh_volumes import CreateRefreshVolumes
from osbuild.pipeline.steps.create_volumes import CreateVolumes
from osbuild.pipeline.steps.preflight import IsoImage, Preflight
from osbuild.pipeline.steps.promote_image import PromoteImage
from osbuild.pipeline.steps.publish_image import PROP_SIZE, PROP_VIRTUAL_SIZE, PublishImage
from osbuild.pipeline.steps.release_builder import ReleaseBuilder
from osbuild.pipeline.steps.render_config import RenderConfig
from osbuild.pipeline.steps.upload_config_iso import UploadConfigIso
from osbuild.pipeline.steps.verify_image import VerifyImage
from osbuild.pipeline.steps.watch_install import WatchInstall
from osbuild.pipeline.timeline import TimelineRecorder
from osbuild.spec import BuildSpec
from osbuild.unattended.state import PARENT_RECORD, BuildState, BuildStatus, StateStore

log = logging.getLogger(__name__)


def build_steps() -> list[Resumable]:
    """Checks and local work first; the first cloud resource is the family claim.
    Preflight comes before render: the answer file selects the image name found on the ISO."""
    return [
        Preflight(),
        RenderConfig(),
        ClaimFamily(),  # with the family lock: marks the build in the cloud until its end
        UploadConfigIso(),
        CreateVolumes(),
        BootBuilder(),
        CheckLock(),
        WatchInstall(),
        CaptureImage(),
        ReleaseBuilder(),  # the image holds the disk now: the builder's resources go
        PublishImage(),  # hidden, with properties; not yet current
        VerifyImage(),
        PromoteImage(),
    ]


def refresh_steps() -> list[Resumable]:
    """Patch the family's current image (``ctx.parent``): the same list without Setup's ISOs."""
    return [
        RenderConfig(),  # the refresh plan, no answer file
        Preflight(),
        ClaimFamily(),
        UploadConfigIso(),
        CreateRefreshVolumes(),  # the config ISO, the target copied from the parent image
        BootFromParent(),  # cloudbase-init's user data starts the driver
        CheckLock(),
        WatchInstall(),
        CaptureImage(),
        ReleaseBuilder(),
        PublishImage(),
        VerifyImage(),
        PromoteImage(),
    ]


# Why `--refresh` chose this kind of build (a state written before it kept a refresh's
# reason in PARENT_RECORD).
KIND_RECORD = "kind"


class RunKind(StrEnum):
    """What a run did: the ``kind`` of its `build.started` event, report and webhook."""

    FULL = "full"  # installed Windows from the ISOs
    REFRESH = "refresh"  # patched the family's current image
    VERIFY = "verify"  # `osbuild images verify`: an existing image's boot test, no build


def steps_for(parent: Parent | None) -> list[Resumable]:
    return build_steps() if parent is None else refresh_steps()


@dataclass
class BuildResult:
    build_id: str
    family: str
    cloud: str | None
    succeeded: bool
    image_id: str | None = None
    image_name: str | None = None
    image_properties: dict[str, str] = field(default_factory=dict)
    error: OsbuildError | None = None
    # Where a failed build stopped: the guest stage or build step the error names, else the
    # step that was running (preflight's refusals, say).
    failed_stage: str | None = None
    leftovers: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    step_timings: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    duration: float = 0.0
    fingerprint: str | None = None
    verify: str | None = None
    promoted: bool = False
    # What rotation did to older images: image_id, image_name, action, reason.
    rotated: list[dict[str, str]] = field(default_factory=list)
    # Why the build did not run (or backed out): another build holds the family, or
    # --if-changed found nothing to rebuild. A skip is not a failure (exit 0).
    skipped: str | None = None
    # SIGINT/SIGTERM came while the last step finished: built, and still exit 130.
    interrupted: str | None = None
    # The refresh's parent image id, and why this kind was chosen. None: the run was
    # refused before it could choose (a cloud did not answer, another build's preflight).
    kind: RunKind | None = RunKind.FULL
    parent_image_id: str | None = None
    kind_reason: str = ""
    # Refreshes in a row behind the image this run made, or would have made had it not
    # failed (a failed refresh still says which generation it tried).
    generation: int | None = None
    # A build finished by `osbuild resume`: what this run took (``duration`` is the whole
    # build's, from its first start). None: not resumed.
    resumed_duration: float | None = None

    @property
    def exit_code(self) -> int:
        if self.error is None:
            return EXIT_INTERRUPTED if self.interrupted else 0
        return self.error.exit_code


def skipped_result(spec: BuildSpec, cloud_name: str | None, build_id: str,
                   reason: str) -> BuildResult:
    return BuildResult(build_id=build_id, family=spec.name, cloud=cloud_name,
                       succeeded=False, skipped=reason)


def run_build(
    spec: BuildSpec,
    conn: Connection,
    *,
    options: BuildOptions,
    bus: EventBus | None = None,
    cancel: CancelToken | None = None,
    cloud_name: str | None = None,
    build_id: str | None = None,
    steps: Sequence[Step] | None = None,
    os_cloud: str | None = None,
    choice: Choice | None = None,
) -> BuildResult:
    """Build one image; never raises for build failures (they are in the result).

    With ``options.state_dir`` the build's state is written there before and after every
    step and whenever a resource is created, so `osbuild resume` and `osbuild gc` can find
    it after a crash. ``cloud_name`` is the cloud's identity (it keys state and reports),
    ``os_cloud`` the clouds.yaml name to connect with again (default ``cloud_name``; ``""``
    for the ``OS_*`` variables). ``choice`` says whether this is a refresh of the family's
    current image (see :mod:`osbuild.images.refresh`; default a full build).
    """
    ctx = new_context(spec, conn, options=options, bus=bus, cancel=cancel,
                      cloud_name=cloud_name, build_id=build_id or new_build_id())
    ctx.os_cloud = cloud_name if os_cloud is None else os_cloud
    ctx.parent = choice.parent if choice else None
    ctx.kind_reason = choice.reason if choice else ""
    if options.state_dir is not None:
        ctx.store = StateStore(options.state_dir)
        ctx.store.create(BuildState(
            build_id=ctx.build_id, family=spec.name, cloud=cloud_name or "",
            os_cloud=ctx.os_cloud or "",
            spec_path=str(spec.source_path or ""), spec_digest=spec.digest,
            log_dir=str(options.log_dir),
        ))
        if ctx.parent is not None:
            ctx.save_record(PARENT_RECORD, **ctx.parent.record())
        if ctx.kind_reason:
            ctx.save_record(KIND_RECORD, reason=ctx.kind_reason)
    return execute(ctx, steps if steps is not None else steps_for(ctx.parent))


def new_context(spec: BuildSpec, conn: Connection, *, options: BuildOptions,
                bus: EventBus | None, cancel: CancelToken | None, cloud_name: str | None,
                build_id: str) -> BuildContext:
    ctx = BuildContext(spec=spec, build_id=build_id, conn=conn, cloud_name=cloud_name,
                       options=options, bus=bus or EventBus(), cancel=cancel or CancelToken())
    ctx.redactor.add(*spec.secret_values(), *auth_secrets(conn))
    return ctx


def execute(ctx: BuildContext, steps: Sequence[Step], *, resumed: datetime | None = None,
            kind: RunKind | None = None) -> BuildResult:
    """Run ``steps`` on a prepared context, write the report and the final state.

    ``resumed``: when the build first started (`osbuild resume`, from its state). The
    build's clock (``ctx.started_at``: events, timeline, duration and the builder.timeout
    deadline) then counts from that start, not from the resume. ``kind`` None: a refresh
    when ``ctx.parent`` is set, else a full build."""
    spec = ctx.spec
    kind = kind or (RunKind.REFRESH if ctx.parent else RunKind.FULL)
    run_started = ctx.clock.now()
    resumed_wall = datetime.now(UTC)
    ctx.started_at = run_started - (ctx.clock.since(resumed) if resumed else 0.0)
    started_wall = resumed or resumed_wall
    ctx.emit(EventName.BUILD_RESUMED if resumed else EventName.BUILD_STARTED,
             spec=str(spec.source_path or ""), cloud=ctx.cloud_name, log_dir=str(ctx.workdir),
             kind=str(kind), parent_image_id=ctx.parent.image_id if ctx.parent else None,
             reason=ctx.kind_reason or None)
    timeline = TimelineRecorder(ctx)
    ctx.bus.subscribe(timeline)
    try:
        with reporting_unanswered(lambda message: ctx.emit(EventName.WARNING, message=message)):
            outcome = run_steps([_Recorded(step) for step in steps], ctx)
    finally:
        ctx.bus.unsubscribe(timeline)
    # Redacted in place: the report, the state, the events and the CLI read this one object.
    error = final_error(outcome)
    if error is not None:
        ctx.redactor.exception(error)
    result = BuildResult(
        build_id=ctx.build_id,
        family=spec.name,
        cloud=ctx.cloud_name,
        succeeded=error is None,
        image_id=ctx.image_id if error is None else None,
        image_name=ctx.image_name if error is None else None,
        image_properties=ctx.image_properties if error is None else {},
        error=error,
        failed_stage=(getattr(error, "stage", None) or outcome.step)
        if error is not None and not isinstance(error, LockBusy) else None,
        leftovers=outcome.leftovers,
        kept=outcome.kept,
        stages=[asdict(s) for s in ctx.stages],
        step_timings={k: round(v, 1) for k, v in ctx.step_timings.items()},
        duration=round(ctx.elapsed(), 1),
        fingerprint=ctx.fingerprint,
        verify=ctx.image_properties.get(PROP_VERIFY),
        promoted=error is None and PromoteImage.name in ctx.step_timings,
        rotated=list(ctx.rotated),
        skipped=str(error) if isinstance(error, LockBusy) else None,
        interrupted=_late_signal(ctx, outcome.late_signal) if error is None else None,
        kind=kind,
        parent_image_id=ctx.parent.image_id if ctx.parent else None,
        kind_reason=ctx.kind_reason,
        generation=(generation_of(ctx.image_properties) if kind is RunKind.VERIFY
                    else generation_made(ctx.parent)),
        resumed_duration=round(ctx.clock.now() - run_started, 1) if resumed else None,
    )
    result.report_path = _write_report(ctx, result, started_wall, timeline.snapshot(),
                                       resumed_at=resumed_wall if resumed else None)
    _write_html_report(ctx, result.report_path)
    _finish_state(ctx, result)
    if result.succeeded:
        # A signal while the reports were written: the run said "stopping", it exits 130.
        result.interrupted = _late_signal(ctx, result.interrupted)
    # The outcome is stamped with the build's end, the duration every summary prints:
    # writing the reports takes a real second, ten minutes of the simulator's 600x clock.
    end = result.duration
    if error is None:
        ctx.emit(EventName.BUILD_SUCCEEDED, at_elapsed=end, image_id=result.image_id,
                 image_name=result.image_name, duration=result.duration,
                 resumed_duration=result.resumed_duration, report=str(result.report_path),
                 fingerprint=result.fingerprint, verify=result.verify,
                 promoted=result.promoted, interrupted=result.interrupted,
                 kind=str(kind), parent_image_id=result.parent_image_id,
                 generation=result.generation, cloud=ctx.cloud_name)
    elif result.skipped:
        ctx.emit(EventName.BUILD_SKIPPED, at_elapsed=end, reason=result.skipped,
                 cloud=ctx.cloud_name)
    else:
        ctx.emit(EventName.BUILD_FAILED, at_elapsed=end, reason=str(error),
                 details=error.lines(), stage=result.failed_stage,
                 exit_code=error.exit_code, leftovers=outcome.leftovers, kept=outcome.kept,
                 report=str(result.report_path), cloud=ctx.cloud_name,
                 kind=str(kind), parent_image_id=result.parent_image_id,
                 generation=result.generation)
    return result


def _late_signal(ctx: BuildContext, seen: str | None) -> str | None:
    """The signal that came once the build could no longer stop (the last step, the final
    cleanup, the reports): the build succeeded, the run exits 130."""
    return seen or (ctx.cancel.signal_name if ctx.cancel.cancelled else None)


class _Recorded:
    """A step whose start and end go into the durable state, with what it records."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.name = step.name

    def run(self, ctx: BuildContext) -> None:
        ctx.save_state(step=self.name)
        self.step.run(ctx)
        if isinstance(self.step, Resumable):
            facts = self.step.record(ctx)
            if facts:
                ctx.save_record(self.name, **facts)
        if ctx.store is not None:
            try:
                ctx.store.step_finished(ctx.build_id, self.name)
            except Exception as exc:
                ctx._state_trouble(exc)


def _finish_state(ctx: BuildContext, result: BuildResult) -> None:
    if result.succeeded:
        status, reason = BuildStatus.SUCCEEDED, None
    elif isinstance(result.error, Interrupted):
        status, reason = BuildStatus.INTERRUPTED, str(result.error)
    else:
        status = BuildStatus.FAILED
        # One line: a stall's console lines stay in the report, a leftover is named here
        # (`osbuild status` shows it long before gc's age lists it).
        error = result.error
        if error is None:
            reason = "failed"
        elif isinstance(error, CleanupIncomplete):
            reason = str(error)
        else:
            reason = error.lines()[0]
    ctx.save_state(status=status, error=reason, image_id=result.image_id,
                   fingerprint=result.fingerprint, pid=os.getpid())


def _iso_record(iso: IsoImage | None) -> dict[str, Any] | None:
    return asdict(iso) if iso is not None else None  # None: a refresh uses no ISO


def _image_sizes(properties: dict[str, str]) -> dict[str, int | None]:
    """The captured image's bytes in Glance and its disk's size (publish recorded both)."""
    def number(key: str) -> int | None:
        value = properties.get(key)
        return int(value) if value and value.isdigit() else None

    return {"size": number(PROP_SIZE), "virtual_size": number(PROP_VIRTUAL_SIZE)}


def _write_html_report(ctx: BuildContext, report_path: Path) -> None:
    """report.html beside report.json; a report that cannot be drawn never fails the build."""
    # Imported here: osbuild.report imports the pipeline's events, and so this module.
    from osbuild.report.build import write_build_html

    try:
        write_build_html(report_path, secrets=ctx.redactor)
    except Exception as exc:
        log.debug("writing the HTML report failed", exc_info=True)
        ctx.emit(EventName.WARNING, message=f"could not write the HTML report: {exc}")


def _write_report(ctx: BuildContext, result: BuildResult, started: datetime,
                  timeline: list[dict[str, Any]], *, resumed_at: datetime | None) -> Path:
    media = ctx.media
    report = {
        "osbuild_version": __version__,
        "build_id": ctx.build_id,
        "family": ctx.spec.name,
        "cloud": ctx.cloud_name,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_seconds": result.duration,  # the whole build's, from `started`
        # `osbuild resume` finished it: when, and what that run took (its timeline).
        "resumed": {"at": resumed_at.isoformat(timespec="seconds"),
                    "duration_seconds": result.resumed_duration} if resumed_at else None,
        # The word the page and `osbuild status` use: an interrupt is no failure of its own.
        "result": ("succeeded" if result.succeeded else "interrupted"
                   if isinstance(result.error, Interrupted) else "failed"),
        "error": result.error.lines() if result.error else None,
        "failed_stage": result.failed_stage,
        "interrupted": isinstance(result.error, Interrupted) or bool(result.interrupted),
        "exit_code": result.exit_code,
        "inputs": {
            "spec": str(ctx.spec.source_path or ""),
            "spec_digest": ctx.spec.digest,
            "windows_iso": _iso_record(ctx.resolved.windows_iso if ctx.resolved else None),
            "virtio_iso": _iso_record(ctx.resolved.virtio_iso if ctx.resolved else None),
            "flavor": ctx.resolved.flavor_name if ctx.resolved else None,
            "config_iso_sha256": media.sha256 if media else None,
        },
        "image": {"id": result.image_id, "name": result.image_name,
                  **_image_sizes(result.image_properties),
                  "properties": result.image_properties} if result.succeeded else None,
        "fingerprint": result.fingerprint,
        "kind": {"kind": str(result.kind), "parent_image_id": result.parent_image_id,
                 "generation": result.generation,
                 "reason": result.kind_reason},
        "verify": result.verify,
        "promotion": {"promoted": result.promoted,
                      "name": result.image_name if result.promoted else None,
                      "rotated": result.rotated},
        "skipped": result.skipped,
        "resources": [
            {"kind": r.kind, "id": r.id, "name": r.name, "step": r.step,
             "deleted": r.done, "kept": not r.done}
            for r in ctx.resources
        ],
        "leftovers": result.leftovers,
        "kept_for_debugging": result.kept,
        "stages": result.stages,
        "step_timings": result.step_timings,
        "timeline": timeline,
        "api_calls": api_calls(ctx.conn),
        "console": {"polls": ctx.console_polls, "bytes_fetched": ctx.console_bytes,
                    "transcript": str(ctx.workdir / "console.log")},
    }
    path = ctx.workdir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    report = ctx.redactor.deep(json.loads(json.dumps(report, default=str)))
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
