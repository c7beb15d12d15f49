"""`osbuild build SPEC...`: build images, several concurrently, and report the outcome."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild.cli.output import HumanView, JsonLines
from osbuild.cloud.clock import PACE_KEY
from osbuild.cloud.connect import check_auth, cloud_identity, connect
from osbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_CLEANUP_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    Interrupted,
    InvalidInput,
    LockBusy,
    PreflightError,
)
from osbuild.naming import new_build_id
from osbuild.ops import metrics, notify
from osbuild.ops.fingerprint import unchanged_since_current
from osbuild.ops.lock import build_lock
from osbuild.ops.state import StateStore, default_state_dir
from osbuild.pipeline import BuildOptions, BuildResult, CancelToken, EventBus, run_build
from osbuild.pipeline.events import Event, EventName
from osbuild.pipeline.run import new_context, skipped_result
from osbuild.pipeline.steps.preflight import combined_quota_problems
from osbuild.spec import BuildSpec, format_duration, load_specs, parse_duration

log = logging.getLogger(__name__)
# --wait-lock without a duration: as long as a build may take (builder.timeout's default).
DEFAULT_LOCK_WAIT = "6h"


def default_log_dir(state_dir: Path | None = None) -> Path:
    """Transcripts and reports sit beside the state files: ``<state dir>/builds/<id>/``."""
    return (state_dir or default_state_dir()) / "builds"


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help=f"build state and locks (default {default_state_dir()})")
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="where console transcripts and reports go "
                        "(default <state dir>/builds)")
    parser.add_argument("--metrics-file", type=Path, default=None, metavar="PATH",
                        help="Prometheus textfile to record the outcome in "
                        "(node_exporter textfile collector)")


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--os-cloud", action="append", dest="os_cloud", metavar="NAME",
        default=None,
        help="cloud from clouds.yaml (default: $OS_CLOUD or OS_* variables); repeat to "
        "build in several clouds",
    )
    parser.add_argument("--os-region-name", default=os.environ.get("OS_REGION_NAME"),
                        metavar="REGION", help="region (default: $OS_REGION_NAME)")


def _time_scale(value: str) -> float:
    try:
        scale = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not scale > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return scale


def add_time_scale_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--time-scale", type=_time_scale, default=None, metavar="FACTOR",
                        help="the cloud's clock runs FACTOR times faster than real time; "
                        f"overrides its clouds.yaml entry's {PACE_KEY} (the simulated cloud "
                        "writes it there); default: that entry's, else 1")


def pace_override(args: argparse.Namespace) -> dict[str, Any]:
    """Settings the command line adds to the clouds.yaml entry (the cloud's pace)."""
    scale = getattr(args, "time_scale", None)
    return {PACE_KEY: scale} if scale is not None else {}


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="one JSON event per line on stdout (for cron and log shipping)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build", help="build images from specs",
        description="Build Windows images in OpenStack from build specs. Exit codes: "
        "0 success or skipped (family busy, or unchanged with --if-changed), 1 build "
        "failed, 2 invalid input, 3 built but cleanup incomplete, 130 interrupted.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    add_cloud_arguments(parser)
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="build up to N specs at once (default 1)")
    add_output_arguments(parser)
    parser.add_argument("--keep-on-failure", action="store_true",
                        help="keep the builder server and its volumes when a build fails")
    add_state_arguments(parser)
    parser.add_argument("--wait-lock", type=_duration, nargs="?", default=None,
                        const=parse_duration(DEFAULT_LOCK_WAIT), metavar="DURATION",
                        help="when another run builds the family in the cloud, wait up to "
                        f"DURATION (default {DEFAULT_LOCK_WAIT}) instead of skipping")
    parser.add_argument("--if-changed", action="store_true",
                        help="skip when the family's current verified image has the same "
                        "input fingerprint and is younger than image.max_age")
    add_time_scale_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise InvalidInput(["--parallel must be at least 1"])
    specs = load_specs(args.specs)
    state_dir = (args.state_dir or default_state_dir()).resolve()
    options = BuildOptions(
        log_dir=(args.log_dir or default_log_dir(state_dir)).resolve(),
        keep_on_failure=args.keep_on_failure,
        state_dir=state_dir,
        lock_family=True,
    )
    results = run_builds(specs, args.os_cloud, options=options, parallel=args.parallel,
                         json_output=args.json, region_name=args.os_region_name,
                         wait_lock=args.wait_lock, if_changed=args.if_changed,
                         metrics_file=args.metrics_file, cloud_settings=pace_override(args))
    if not args.json:
        print_summary(results)
    return combined_exit_code(results)


def build_jobs(specs: list[BuildSpec],
               cli_clouds: list[str] | None) -> list[tuple[BuildSpec, str | None]]:
    """Every (spec, cloud): the CLI's clouds for every spec, else each spec's `clouds`."""
    jobs: list[tuple[BuildSpec, str | None]] = []
    for spec in specs:
        clouds: list[str | None] = [*(cli_clouds or spec.clouds)] or [None]
        jobs.extend((spec, cloud) for cloud in dict.fromkeys(clouds))
    return jobs


def run_builds(specs: list[BuildSpec], clouds: list[str] | None, *, options: BuildOptions,
               parallel: int = 1, json_output: bool = False, region_name: str | None = None,
               listeners: list[Callable[[Event], None]] | None = None,
               wait_lock: float | None = None, if_changed: bool = False,
               metrics_file: Path | None = None,
               cloud_settings: Mapping[str, Any] | None = None) -> list[BuildResult]:
    """Check credentials for every cloud, then run every (spec, cloud) build.

    Builds in different clouds do not compete: ``parallel`` applies per cloud.
    ``cloud_settings`` overrides clouds.yaml settings of every cloud (``--time-scale``).
    """
    settings = dict(cloud_settings or {})
    jobs = build_jobs(specs, clouds)
    distinct = list(dict.fromkeys(cloud for _spec, cloud in jobs))
    identities: dict[str | None, str] = {}
    for cloud in distinct:  # wrong credentials are input errors, before anything is built
        conn = connect(cloud, region_name=region_name, **settings)
        try:
            check_auth(conn, cloud)
            identities[cloud] = cloud_identity(conn, cloud)
        finally:
            conn.close()
    check_quota_together(jobs, identities, options=options, parallel=parallel,
                         region_name=region_name, settings=settings)
    bus = EventBus()
    view = JsonLines() if json_output else HumanView()
    bus.subscribe(view)
    for listener in listeners or []:
        bus.subscribe(listener)
    cancel = CancelToken()

    def one(spec: BuildSpec, cloud: str | None) -> BuildResult:
        conn = connect(cloud, region_name=region_name, **settings)
        try:
            result = _locked_build(spec, conn, cloud, identities[cloud], options=options,
                                   bus=bus, cancel=cancel, wait_lock=wait_lock,
                                   if_changed=if_changed)
        finally:
            conn.close()
        report_outcome(result, spec, metrics_file=metrics_file, bus=bus)
        return result

    try:
        workers = parallel * len(distinct)
        with _signals_cancel(cancel), ThreadPoolExecutor(max_workers=workers) as pool:
            futures: list[Future[BuildResult]] = [pool.submit(one, s, c) for s, c in jobs]
            pending = set(futures)
            while pending:
                # Short waits keep the main thread free to take SIGINT/SIGTERM.
                _done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            return [f.result() for f in futures]
    finally:
        view.close()


def check_quota_together(jobs: list[tuple[BuildSpec, str | None]],
                         identities: dict[str | None, str], *, options: BuildOptions,
                         parallel: int, region_name: str | None,
                         settings: Mapping[str, Any] | None = None) -> None:
    """Builds that will run side by side in one cloud must fit its quotas together."""
    by_cloud: dict[str | None, list[BuildSpec]] = {}
    for spec, cloud in jobs:
        by_cloud.setdefault(cloud, []).append(spec)
    problems: list[str] = []
    for cloud, specs in by_cloud.items():
        if min(parallel, len(specs)) < 2:
            continue
        conn = connect(cloud, region_name=region_name, **(settings or {}))
        try:
            contexts = [new_context(spec, conn, options=options, bus=EventBus(), cancel=None,
                                    cloud_name=identities[cloud], build_id="preflight")
                        for spec in specs]
            found = combined_quota_problems(contexts, at_once=parallel, parallel=parallel)
        finally:
            conn.close()
        where = f"{identities[cloud]}: " if len(by_cloud) > 1 else ""
        problems.extend(where + problem for problem in found)
    if problems:
        raise PreflightError(problems)


def _locked_build(spec: BuildSpec, conn: Any, os_cloud: str | None, cloud: str, *,
                  options: BuildOptions, bus: EventBus, cancel: CancelToken,
                  wait_lock: float | None, if_changed: bool) -> BuildResult:
    """Take the family's lock in this cloud, check --if-changed, then build.

    ``os_cloud`` is what to connect with (None: OS_* variables), ``cloud`` the cloud's
    identity (:func:`cloud_identity`), which keys the lock, the state and the reports.
    """
    build_id = new_build_id()
    # Without a state directory (the demo's throwaway cloud) there is nothing to lock in.
    lock: AbstractContextManager[Any] = nullcontext()
    if options.state_dir is not None:
        lock = build_lock(conn, locks_dir=StateStore(options.state_dir).locks_dir,
                          cloud=cloud, family=spec.name, build_id=build_id,
                          wait=wait_lock, cancel=cancel.event)
    try:
        with lock:
            if if_changed:
                same, why = unchanged_since_current(conn, spec)
                if same:
                    return _skip(spec, cloud, build_id, f"unchanged: {why}", bus)
                bus.publish(Event(EventName.BUILD_REBUILDING, build_id, spec.name,
                                  {"reason": why, "cloud": cloud}))
            return run_build(spec, conn, options=options, bus=bus, cancel=cancel,
                             cloud_name=cloud, os_cloud=os_cloud, build_id=build_id)
    except LockBusy as exc:
        return _skip(spec, cloud, build_id, str(exc), bus)
    except Interrupted as exc:  # Ctrl-C or SIGTERM while waiting for the lock
        error = Interrupted(cancel.signal_name, during=exc.during)
        bus.publish(Event(EventName.BUILD_FAILED, build_id, spec.name,
                          {"reason": str(error), "details": error.lines(), "stage": None,
                           "exit_code": error.exit_code, "cloud": cloud}))
        return BuildResult(build_id=build_id, family=spec.name, cloud=cloud,
                           succeeded=False, error=error)


def _skip(spec: BuildSpec, cloud: str | None, build_id: str, reason: str,
          bus: EventBus) -> BuildResult:
    bus.publish(Event(EventName.BUILD_SKIPPED, build_id, spec.name,
                      {"reason": reason, "cloud": cloud}))
    return skipped_result(spec, cloud, build_id, reason)


def report_outcome(result: BuildResult, spec: BuildSpec, *, metrics_file: Path | None,
                   bus: EventBus) -> None:
    """The Prometheus textfile and the webhook; neither can fail the build."""
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
        stage=getattr(error, "stage", None), image_id=result.image_id,
        image_name=result.image_name, fingerprint=result.fingerprint, verify=result.verify,
        promoted=result.promoted, duration_seconds=result.duration,
        exit_code=result.exit_code, finished_at=finished,
        extra={"report": str(result.report_path) if result.report_path else None},
    )
    sent = notify.send(spec.notify.url, summary)
    bus.publish(Event(EventName.NOTIFY_SENT if sent.delivered else EventName.WARNING,
                      result.build_id,
                      result.family,
                      {"attempts": sent.attempts, "status": sent.status} if sent.delivered
                      else {"message": f"webhook not delivered after {sent.attempts} "
                            f"attempt(s): {sent.error}"}))


@contextmanager
def _signals_cancel(cancel: CancelToken) -> Iterator[None]:
    """SIGINT/SIGTERM cancel every build; the builds then clean up and return."""

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if cancel.cancelled:
            print(f"osbuild: {name} again: still cleaning up, please wait", file=sys.stderr)
            return
        print(f"osbuild: {name}: stopping and cleaning up", file=sys.stderr)
        cancel.cancel(name)

    if sys.platform == "win32" or not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def combined_exit_code(results: list[BuildResult]) -> int:
    codes = {r.exit_code for r in results}
    for code in (EXIT_INTERRUPTED, EXIT_INVALID_INPUT, EXIT_CLEANUP_INCOMPLETE,
                 EXIT_BUILD_FAILED):
        if code in codes:
            return code
    return EXIT_OK


def print_summary(results: list[BuildResult]) -> None:
    for result in results:
        where = f" in {result.cloud}" if result.cloud else ""
        if result.skipped:
            print(f"{result.family}{where}: skipped: {result.skipped}")
            continue
        if result.error is None:
            print(f"{result.family}{where}: built image {result.image_name} "
                  f"({result.image_id}) in {format_duration(result.duration)}")
            if result.interrupted:
                print(f"  {result.interrupted} came during the last step, which finished: "
                      "the image is published; exit 130")
        else:
            lines = result.error.lines()
            failed = "" if isinstance(result.error, Interrupted) else "failed: "
            print(f"{result.family}{where}: build {result.build_id} {failed}{lines[0]}",
                  file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
            if result.kept:
                print("  kept for debugging (delete when done): " + ", ".join(result.kept),
                      file=sys.stderr)
        if result.report_path:
            print(f"  report: {result.report_path}",
                  file=sys.stdout if result.error is None else sys.stderr)
