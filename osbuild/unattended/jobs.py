"""Unattended runs: many builds (specs x clouds) at once, family locks, --if-changed, outcomes.

What `osbuild build` and `osbuild resume` do between parsing and printing, usable without
the CLI: take keyword-only arguments, return result objects, raise :mod:`osbuild.errors`.
Events go to the listeners the caller gives; nothing here prints.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild.cloud.clock import session_clock
from osbuild.cloud.connect import check_auth, cloud_identity, connect
from osbuild.durations import format_duration
from osbuild.errors import (
    EXIT_INTERRUPTED,
    Interrupted,
    InvalidInput,
    LockBusy,
    OsbuildError,
    PreflightError,
    RunRefused,
    run_exit_code,
)
from osbuild.images.refresh import RefreshMode, choose
from osbuild.naming import new_build_id
from osbuild.pipeline import BuildOptions, BuildResult, CancelToken, EventBus, run_build
from osbuild.pipeline.events import Event, EventName, Listener
from osbuild.pipeline.resume import load_resumable, resume_build
from osbuild.pipeline.run import RunKind, skipped_result
from osbuild.spec import BuildSpec
from osbuild.unattended import metrics, notify
from osbuild.unattended.fingerprint import unchanged_since_current
from osbuild.unattended.lock import build_lock
from osbuild.unattended.preflight import RunCheck, check_run, preflight_run
from osbuild.unattended.process import osbuild_alive
from osbuild.unattended.state import StateStore, default_state_dir


def default_log_dir(state_dir: Path | None = None) -> Path:
    """Transcripts and reports sit beside the state files: ``<state dir>/builds/<id>/``."""
    return (state_dir or default_state_dir()) / "builds"


@dataclass(frozen=True)
class Job:
    """One build: a spec in a cloud (``cloud`` as clouds.yaml names it; None: OS_* vars)."""

    spec: BuildSpec
    cloud: str | None


@dataclass(frozen=True)
class RunResult:
    """The outcome of every job, in the order the jobs were planned."""

    results: list[BuildResult]

    @property
    def exit_code(self) -> int:
        """One code for the run: :data:`osbuild.errors.EXIT_PRECEDENCE` says which."""
        return run_exit_code(r.exit_code for r in self.results)


def plan_jobs(*, specs: Sequence[BuildSpec], clouds: Sequence[str] | None) -> list[Job]:
    """Every (spec, cloud): the given clouds for every spec, else each spec's `clouds`."""
    jobs: list[Job] = []
    for spec in specs:
        names: list[str | None] = [*(clouds or spec.clouds)] or [None]
        jobs.extend(Job(spec, cloud) for cloud in dict.fromkeys(names))
    return jobs


def shared_families(jobs: Sequence[Job]) -> list[str]:
    """A family built from two spec files in one cloud (a copied spec whose `name` was not
    changed), or from one spec file given twice. Both would build and publish in turn, each
    replacing the other's image, and --if-changed would find the family changed on every
    run."""
    files: dict[tuple[str, str | None], list[str]] = {}
    for job in jobs:
        files.setdefault((job.spec.name, job.cloud), []).append(
            str(job.spec.source_path or "<spec>"))
    problems = []
    for (family, cloud), paths in files.items():
        where = f"{family}{f' in {cloud}' if cloud else ''}"
        distinct = list(dict.fromkeys(paths))
        if len(distinct) > 1:
            problems.append(f"{where}: name: {family} in {len(distinct)} specs "
                            f"({', '.join(distinct)}); a family is built from one spec: give "
                            "each its own name")
        elif len(paths) > 1:
            # `osbuild build a.yaml a.yaml`, or two globs that overlap: with --parallel 1 the
            # second build starts when the first has finished, and builds it all again.
            problems.append(f"{where}: {distinct[0]} is given {len(paths)} times")
    return problems


def run_builds(*, specs: Sequence[BuildSpec], clouds: Sequence[str] | None,
               options: BuildOptions, parallel: int = 1, region_name: str | None = None,
               listeners: Sequence[Listener] = (), wait_lock: float | None = None,
               if_changed: bool = False, metrics_file: Path | None = None,
               on_signal: SignalNotice | None = None,
               cloud_settings: Mapping[str, Any] | None = None,
               refresh: RefreshMode = RefreshMode.NEVER) -> RunResult:
    """Check credentials for every cloud, preflight every (spec, cloud) build of a run of
    several (:mod:`osbuild.unattended.preflight`), then run them.

    Builds in different clouds do not compete: ``parallel`` applies per cloud. SIGINT and
    SIGTERM (when called from the main thread) cancel every build, which then cleans up.
    ``cloud_settings`` overrides clouds.yaml settings of every cloud (``--time-scale``).
    """
    settings = dict(cloud_settings or {})
    if parallel < 1:
        raise InvalidInput(["--parallel must be at least 1"])
    check_folders(options, metrics_file=metrics_file)
    jobs = plan_jobs(specs=specs, clouds=clouds)
    shared = shared_families(jobs)
    if shared:
        raise InvalidInput(shared)
    distinct = list(dict.fromkeys(job.cloud for job in jobs))
    bus = _bus(listeners)
    cancel = CancelToken()
    reached = _reach_clouds(distinct, region_name=region_name, settings=settings)
    identities = reached.identities
    if reached.problems:
        # A cloud that refused or did not answer builds nothing in any cloud (exit 2, every
        # problem at once): to cron's alerts a failure of each build, as a refused preflight.
        unreached = RunRefused(reached.problems, of_job=[
            reached.problems_of.get(job.cloud, []) for job in jobs])
        # Its webhooks retry for seconds: a signal stops the retries, each build still gets
        # its outcome (SIGTERM killed the process there: exit 143, later builds untold).
        with signals_cancel(cancel, on_signal=on_signal):
            _record_refused(jobs, reached.labels, unreached, metrics_file=metrics_file,
                            bus=bus, what="its clouds", cancel=cancel)
        raise InvalidInput(reached.problems)
    # Every build of the run, before the first one creates anything (exit 2 with them all).
    try:
        preflight_run(jobs=jobs, identities=identities, options=options, parallel=parallel,
                      region_name=region_name, settings=settings, refresh=refresh,
                      if_changed=if_changed, wait_lock=wait_lock)
    except RunRefused as refused:
        with signals_cancel(cancel, on_signal=on_signal):
            _record_refused(jobs, identities, refused, metrics_file=metrics_file, bus=bus,
                            what="its preflight", cancel=cancel)
        raise
    with signals_cancel(cancel, on_signal=on_signal):
        return _run_jobs(jobs, identities, options=options, bus=bus, cancel=cancel,
                         parallel=parallel, region_name=region_name, settings=settings,
                         wait_lock=wait_lock, if_changed=if_changed, refresh=refresh,
                         metrics_file=metrics_file, distinct=distinct)


def record_invalid_run(*, specs: Sequence[BuildSpec], clouds: Sequence[str] | None,
                       problems: Sequence[str], metrics_file: Path | None = None,
                       listeners: Sequence[Listener] = (),
                       on_signal: SignalNotice | None = None) -> None:
    """A run refused because one of its spec files is invalid builds no family: to cron's
    alerts (the metrics file, the webhooks) each build of the valid specs is a failure, as
    in a run its preflight refused. Before, one typo in /etc/osbuild/builds/ stopped every
    family with no trace but the exit code, which cron ignores, until the staleness alert.
    Nothing is asked of the cloud: a build's cloud is named as the run names it."""
    jobs = plan_jobs(specs=specs, clouds=clouds)
    labels = {job.cloud: job.cloud or os.environ.get("OS_CLOUD") or "default" for job in jobs}
    cancel = CancelToken()
    with signals_cancel(cancel, on_signal=on_signal):
        _record_refused(jobs, labels, RunRefused(list(problems), of_job=[[] for _ in jobs]),
                        metrics_file=metrics_file, bus=_bus(listeners), what="its specs",
                        cancel=cancel)


def _run_jobs(jobs: Sequence[Job], identities: Mapping[str | None, str], *,
              options: BuildOptions, bus: EventBus, cancel: CancelToken, parallel: int,
              region_name: str | None, settings: Mapping[str, Any],
              wait_lock: float | None, if_changed: bool, refresh: RefreshMode,
              metrics_file: Path | None, distinct: Sequence[str | None]) -> RunResult:
    """The run's builds, ``parallel`` at a time in each cloud."""

    def one(job: Job) -> BuildResult:
        conn = connect(job.cloud, region_name=region_name, **settings)
        try:
            result = _locked_build(job.spec, conn, job.cloud, identities[job.cloud],
                                   options=options, bus=bus, cancel=cancel,
                                   wait_lock=wait_lock, if_changed=if_changed,
                                   refresh=refresh)
        finally:
            conn.close()
        report_outcome(result=result, spec=job.spec, metrics_file=metrics_file, bus=bus,
                       cancel=cancel)
        return result

    with ExitStack() as pools:
        # One pool per cloud: ``parallel`` bounds each cloud's builds on its own, so a cloud
        # with many jobs never takes the slots of another (one shared pool of
        # parallel x clouds workers let two builds run in one cloud with --parallel 1).
        pool_of = {cloud: pools.enter_context(ThreadPoolExecutor(max_workers=parallel))
                   for cloud in distinct}
        futures: list[Future[BuildResult]] = [pool_of[job.cloud].submit(one, job)
                                              for job in jobs]
        pending = set(futures)
        while pending:
            # Short waits keep the main thread free to take SIGINT/SIGTERM.
            _done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        return RunResult([f.result() for f in futures])


def preflight_only(*, specs: Sequence[BuildSpec], clouds: Sequence[str] | None,
                   options: BuildOptions, parallel: int = 1, region_name: str | None = None,
                   cloud_settings: Mapping[str, Any] | None = None,
                   refresh: RefreshMode = RefreshMode.NEVER
                   ) -> tuple[list[Job], dict[str | None, str], RunCheck]:
    """`osbuild validate --os-cloud`: what `osbuild build` with the same specs, clouds and
    options would check before creating anything, for every build (also a single one, and
    one the run would skip as busy or unchanged); nothing is created, no lock is taken."""
    settings = dict(cloud_settings or {})
    if parallel < 1:
        raise InvalidInput(["--parallel must be at least 1"])
    jobs = plan_jobs(specs=specs, clouds=clouds)
    shared = shared_families(jobs)
    if shared:
        raise InvalidInput(shared)
    reached_clouds = _reach_clouds(list(dict.fromkeys(job.cloud for job in jobs)),
                                   region_name=region_name, settings=settings)
    identities, unreached = reached_clouds.identities, reached_clouds.problems
    if unreached and not identities:
        raise InvalidInput(unreached)
    # The clouds that answered are checked all the same: every problem at once.
    reached = [job for job in jobs if job.cloud in identities]
    found = check_run(jobs=reached, identities=identities, options=options,
                      parallel=parallel, region_name=region_name, settings=settings,
                      refresh=refresh, skipping=False, name_clouds=True)
    found.problems[:0] = unreached
    return reached, identities, found


def resume(*, build_id: str, state_dir: Path | None = None, log_dir: Path | None = None,
           keep_on_failure: bool = False, os_cloud: str | None = None,
           region_name: str | None = None, force: bool = False,
           listeners: Sequence[Listener] = (), metrics_file: Path | None = None,
           on_signal: SignalNotice | None = None,
           cloud_settings: Mapping[str, Any] | None = None,
           wait_lock: float | None = None) -> BuildResult:
    """Finish a build whose orchestrator died, under its family's lock (``wait_lock``:
    the cloud's seconds to wait for another build of the family, as --wait-lock).

    ``log_dir`` None: where the build logged, else beside the state; ``os_cloud`` None:
    the cloud the build ran in.
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    store = StateStore(state_dir)
    state, spec = load_resumable(store, build_id, force=force)
    # The clouds.yaml name the build connected with; None: the OS_* variables.
    os_cloud = os_cloud or (state.os_cloud if state.os_cloud is not None
                            else state.cloud) or None
    log_dir = log_dir or (Path(state.log_dir) if state.log_dir else None)
    options = BuildOptions(log_dir=(log_dir or default_log_dir(state_dir)).resolve(),
                           keep_on_failure=keep_on_failure,
                           state_dir=state_dir, lock_family=True)
    check_folders(options, metrics_file=metrics_file)
    conn = connect(os_cloud, region_name=region_name, **(cloud_settings or {}))
    check_auth(conn, os_cloud)
    cloud = cloud_identity(conn, os_cloud)
    bus = _bus(listeners)
    cancel = CancelToken()
    lock = build_lock(conn, locks_dir=store.locks_dir, cloud=cloud,
                      family=spec.name, build_id=state.build_id, cancel=cancel.event,
                      wait=wait_lock, **_lock_notices(bus, state.build_id, spec.name, cloud))
    try:
        with signals_cancel(cancel, on_signal=on_signal), lock:
            result = resume_build(state, spec, conn, store=store, options=options, bus=bus,
                                  cancel=cancel, cloud_name=cloud, os_cloud=os_cloud)
    except LockBusy as exc:
        result = _skip(spec, cloud, state.build_id, str(exc), bus)
    finally:
        conn.close()
    with signals_cancel(cancel, on_signal=on_signal):
        report_outcome(result=result, spec=spec, metrics_file=metrics_file, bus=bus,
                       cancel=cancel)
    return result


def check_folders(options: BuildOptions, *, metrics_file: Path | None = None) -> None:
    """The state and log folders (and the metrics file's) exist or can be made, and take
    files: an input error before anything is built, not a traceback once the build has made
    its first resource (nor, for the metrics, a warning when the build ends hours later)."""
    problems = []
    for flag, folder in (("--state-dir", options.state_dir), ("--log-dir", options.log_dir)):
        if folder is not None:
            problems += _folder_problems(f"{flag} {folder}", folder, "it")
    if metrics_file is not None:
        if metrics_file.is_dir():
            problems.append(f"--metrics-file {metrics_file}: is a folder, not a file")
        else:
            problems += _folder_problems(f"--metrics-file {metrics_file}",
                                         metrics_file.parent, "its folder")
    if problems:
        raise InvalidInput(problems)


def _folder_problems(what: str, folder: Path, called: str) -> list[str]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"{what}: cannot create {called}: {exc.strerror or exc}"]
    if not os.access(folder, os.W_OK | os.X_OK):
        return [f"{what}: cannot write in {called}"]
    return []


def _bus(listeners: Sequence[Listener]) -> EventBus:
    bus = EventBus()
    for listener in listeners:
        bus.subscribe(listener)
    return bus


def _lock_notices(bus: EventBus, build_id: str, family: str,
                  cloud: str) -> dict[str, Callable[[str], None]]:
    """What the family lock says while it is taken: what it waits for (an info event) and
    whose stale claim or builder it goes past (a warning)."""
    return {
        "on_wait": lambda message: bus.publish(Event(
            EventName.INFO, build_id, family, {"message": message, "cloud": cloud})),
        "on_stale": lambda message: bus.publish(Event(
            EventName.WARNING, build_id, family, {"message": message, "cloud": cloud})),
    }


@dataclass
class _Reached:
    identities: dict[str | None, str] = field(default_factory=dict)  # the clouds that answer
    problems_of: dict[str | None, list[str]] = field(default_factory=dict)  # the others'
    # What the metrics and webhooks call every cloud, one that did not answer too.
    labels: dict[str | None, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        return [line for lines in self.problems_of.values() for line in lines]


def _reach_clouds(clouds: Sequence[str | None], *, region_name: str | None,
                  settings: Mapping[str, Any]) -> _Reached:
    """The identity of each cloud that answers, and the problems of each that does not;
    wrong credentials are input errors, before anything is built, every cloud's at once."""
    reached = _Reached()
    for cloud in clouds:
        reached.labels[cloud] = cloud or "default"
        try:
            conn = connect(cloud, region_name=region_name, **settings)
        except InvalidInput as exc:
            reached.problems_of[cloud] = exc.lines()
            continue
        try:
            # From the configuration alone: a cloud that does not answer has it too.
            reached.labels[cloud] = cloud_identity(conn, cloud)
            check_auth(conn, cloud)
            reached.identities[cloud] = reached.labels[cloud]
        except InvalidInput as exc:
            reached.problems_of[cloud] = exc.lines()
        finally:
            conn.close()
    return reached


def _locked_build(spec: BuildSpec, conn: Any, os_cloud: str | None, cloud: str, *,
                  options: BuildOptions, bus: EventBus, cancel: CancelToken,
                  wait_lock: float | None, if_changed: bool,
                  refresh: RefreshMode = RefreshMode.NEVER) -> BuildResult:
    """Take the family's lock in this cloud, check --if-changed, then build.

    ``os_cloud`` is what to connect with (None: OS_* variables), ``cloud`` the cloud's
    identity (:func:`cloud_identity`), which keys the lock, the state and the reports.
    A build that backs out at its claim (another host started the family at the same
    moment) starts again when ``wait_lock`` (--wait-lock) leaves time: the new start waits
    at the cloud guard for the other build's claim, as --wait-lock promises.
    """
    clock = session_clock(conn)
    started = clock.now()
    while True:
        result = _locked_attempt(spec, conn, os_cloud, cloud, options=options, bus=bus,
                                 cancel=cancel, wait_lock=wait_lock, if_changed=if_changed,
                                 refresh=refresh)
        if wait_lock is None or not isinstance(result.error, LockBusy):
            return result
        left = wait_lock - (clock.now() - started)
        if left <= 0 or cancel.cancelled:
            return result
        bus.publish(Event(EventName.INFO, result.build_id, spec.name, {
            "message": f"backed out for build {result.error.build_id}, which went first; "
                       f"--wait-lock: waiting up to {format_duration(round(left))} for it, then "
                       "building again",
            "cloud": cloud}))
        started, wait_lock = clock.now(), left


def _locked_attempt(spec: BuildSpec, conn: Any, os_cloud: str | None, cloud: str, *,
                    options: BuildOptions, bus: EventBus, cancel: CancelToken,
                    wait_lock: float | None, if_changed: bool,
                    refresh: RefreshMode) -> BuildResult:
    build_id = new_build_id()
    if cancel.cancelled:
        # SIGINT/SIGTERM came while an earlier build of the run had this one's slot: it
        # never starts (no state, report or build.started for a build that never ran).
        waiting = Interrupted(cancel.signal_name, where="while waiting for its turn")
        return _not_started(spec, cloud, build_id, waiting, bus)
    # Without a state directory (the demo's throwaway cloud) there is nothing to lock in.
    lock: AbstractContextManager[Any] = nullcontext()
    if options.state_dir is not None:
        lock = build_lock(conn, locks_dir=StateStore(options.state_dir).locks_dir,
                          cloud=cloud, family=spec.name, build_id=build_id,
                          wait=wait_lock, cancel=cancel.event,
                          **_lock_notices(bus, build_id, spec.name, cloud))
    try:
        with lock:
            if if_changed:
                same, why = unchanged_since_current(conn, spec)
                if same:
                    return _skip(spec, cloud, build_id, f"unchanged: {why}", bus)
                bus.publish(Event(EventName.BUILD_REBUILDING, build_id, spec.name,
                                  {"reason": why, "cloud": cloud}))
            # Chosen before anything is created; `always` without a current image is exit 2
            # for this build alone (a run of several checked that before its first build
            # started: here the image went while the earlier builds ran).
            try:
                choice = choose(conn, spec, refresh)
            except InvalidInput as exc:
                return _not_started(spec, cloud, build_id, exc, bus)
            return run_build(spec, conn, options=options, bus=bus, cancel=cancel,
                             cloud_name=cloud, os_cloud=os_cloud, build_id=build_id,
                             choice=choice)
    except LockBusy as exc:
        return _skip(spec, cloud, build_id, _dead_here(exc.build_id, options) or str(exc), bus)
    except Interrupted as exc:  # Ctrl-C or SIGTERM while waiting for the lock
        return _not_started(spec, cloud, build_id,
                            Interrupted(cancel.signal_name, where=exc.where), bus)


def _record_refused(jobs: Sequence[Job], identities: Mapping[str | None, str],
                    refused: RunRefused, *, metrics_file: Path | None, bus: EventBus,
                    what: str, cancel: CancelToken | None = None) -> None:
    """Every build of a refused run is a failure in the metrics and webhooks, as a build
    refused by its own preflight is: cron ignores exit codes, the alerts read these.
    ``what`` refused the run: its preflight, or its clouds (one did not answer)."""
    for job, own in zip(jobs, refused.of_job, strict=True):
        problems = own or [f"not built: the run of {len(jobs)} builds was refused by {what}: "
                           + "; ".join(refused.problems)]
        # No kind: the run never asked the cloud whether to refresh or build in full.
        result = _not_started(job.spec, identities[job.cloud], new_build_id(),
                              PreflightError(problems), bus, kind=None)
        # A signal stops the webhooks' retries (each build still gets its outcome).
        report_outcome(result=result, spec=job.spec, metrics_file=metrics_file, bus=bus,
                       cancel=cancel)


def _dead_here(build_id: str | None, options: BuildOptions) -> str | None:
    """Why to skip when the builder in the cloud is a build of this host whose osbuild died
    (a reboot, a SIGKILL): its heartbeat is fresh, yet no other host builds; resume it."""
    if build_id is None or options.state_dir is None:
        return None
    try:
        state = StateStore(options.state_dir).load(build_id)
    except (OSError, InvalidInput):  # another host's build, or a state file unreadable
        return None
    if state.is_finished or osbuild_alive(state) is not False:  # running, or not ours
        return None
    return (f"build {build_id} of this host is still in the cloud, but its osbuild (pid "
            f"{state.pid}) is gone: osbuild resume {build_id}, or osbuild gc --older-than 0 "
            "to start over; skipping")


def _not_started(spec: BuildSpec, cloud: str | None, build_id: str, error: OsbuildError,
                 bus: EventBus, *, kind: RunKind | None = RunKind.FULL) -> BuildResult:
    """A build that ended before its first step: nothing was created. Its `build.failed`
    gives the build id its webhook's `notify.sent` carries something to join."""
    bus.publish(Event(EventName.BUILD_FAILED, build_id, spec.name,
                      {"reason": str(error), "details": error.lines(), "stage": None,
                       "exit_code": error.exit_code, "cloud": cloud,
                       # Every build.failed has them (README's event table).
                       "kind": str(kind) if kind else None, "parent_image_id": None,
                       "generation": None}))
    return BuildResult(build_id=build_id, family=spec.name, cloud=cloud,
                       succeeded=False, error=error, kind=kind)


def _skip(spec: BuildSpec, cloud: str | None, build_id: str, reason: str,
          bus: EventBus) -> BuildResult:
    bus.publish(Event(EventName.BUILD_SKIPPED, build_id, spec.name,
                      {"reason": reason, "cloud": cloud}))
    return skipped_result(spec, cloud, build_id, reason)


def report_outcome(*, result: BuildResult, spec: BuildSpec, metrics_file: Path | None,
                   bus: EventBus, cancel: CancelToken | None = None) -> None:
    """The Prometheus textfile and the webhook; neither can fail the build. A signal while
    the webhook waits to retry stops the retries, and the run exits 130 (``interrupted``)."""
    finished = datetime.now(UTC)
    if metrics_file is not None:
        outcome: metrics.Result = ("skipped" if result.skipped else
                                   "success" if result.succeeded else "failure")
        try:
            metrics.record(metrics_file, metrics.BuildOutcome(
                result.family, result.cloud or "default", outcome,
                None if result.skipped else result.duration, finished))
        except OSError as exc:
            bus.publish(Event(EventName.WARNING, result.build_id, result.family,
                              {"message": f"could not write {metrics_file}: {exc}"}))
    if spec.notify is None or result.skipped:
        return
    if not notify.should_notify(spec.notify.on, result.succeeded):
        return
    error = result.error
    summary = notify.build_summary(
        build_id=result.build_id, family=result.family, cloud=result.cloud or "default",
        succeeded=result.succeeded, reason=str(error) if error else None,
        stage=result.failed_stage, image_id=result.image_id,
        image_name=result.image_name, fingerprint=result.fingerprint, verify=result.verify,
        promoted=result.promoted, duration_seconds=result.duration,
        exit_code=result.exit_code, finished_at=finished,
        extra={"report": str(result.report_path) if result.report_path else None,
               # A verified image a failed promotion kept, or one whose boot test failed:
               # what `osbuild images verify` or `promote` takes ("image ID (NAME)").
               "kept": [k for k in result.kept if k.startswith("image ")],
               # exit_code 130: stopped by SIGINT/SIGTERM, not failed on its own.
               "interrupted": result.exit_code == EXIT_INTERRUPTED,
               "kind": str(result.kind) if result.kind else None,
               "parent_image_id": result.parent_image_id,
               "resumed_duration_seconds": result.resumed_duration},
    )
    sent = notify.send(spec.notify.url, summary, cancel=cancel.event if cancel else None)
    if cancel is not None and cancel.cancelled and result.error is None \
            and not result.interrupted:
        result.interrupted = cancel.signal_name
    if sent.delivered:
        bus.publish(Event(EventName.NOTIFY_SENT, result.build_id, result.family,
                          {"attempts": sent.attempts, "status": sent.status}))
    else:
        bus.publish(Event(EventName.WARNING, result.build_id, result.family,
                          {"message": f"webhook not delivered after {sent.attempts} "
                           f"attempt(s): {sent.error}"}))


# Told of each SIGINT/SIGTERM: the signal's name, and whether a cancel was already under way.
SignalNotice = Callable[[str, bool], None]


@contextmanager
def signals_cancel(cancel: CancelToken, *,
                   on_signal: SignalNotice | None = None) -> Iterator[None]:
    """SIGINT/SIGTERM cancel every build; the builds then clean up and return.

    Only the main thread can take signals: elsewhere this does nothing.
    """

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        again = cancel.cancelled
        if not again:
            cancel.cancel(name)  # first: the builds must stop even if telling fails
        if on_signal is not None:
            with suppress(OSError):  # a closed stderr (`2>&1 | head`)
                on_signal(name, again)

    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
