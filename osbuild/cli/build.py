"""`osbuild build SPEC...`: build images, several concurrently, and report the outcome."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from osbuild.build import BuildOptions, BuildResult, CancelToken, EventBus, run_build
from osbuild.build.events import Event
from osbuild.cli.output import HumanView, JsonLines
from osbuild.cloud.connect import check_auth, connect
from osbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_CLEANUP_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    InvalidInput,
)
from osbuild.spec import BuildSpec, load_specs


def default_log_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "osbuild" / "builds"


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--os-cloud", action="append", dest="os_cloud", metavar="NAME",
        default=None,
        help="cloud from clouds.yaml (default: $OS_CLOUD or OS_* variables); repeat to "
        "build in several clouds",
    )
    parser.add_argument("--os-region-name", default=os.environ.get("OS_REGION_NAME"),
                        metavar="REGION", help="region (default: $OS_REGION_NAME)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="one JSON event per line on stdout (for cron and log shipping)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build", help="build images from specs",
        description="Build Windows images in OpenStack from build specs. Exit codes: "
        "0 success, 1 build failed, 2 invalid input, 3 built but cleanup incomplete, "
        "130 interrupted.",
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    add_cloud_arguments(parser)
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="build up to N specs at once (default 1)")
    add_output_arguments(parser)
    parser.add_argument("--keep-on-failure", action="store_true",
                        help="keep the builder server and its volumes when a build fails")
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help=f"where console transcripts and reports go "
                        f"(default {default_log_dir()})")
    parser.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise InvalidInput(["--parallel must be at least 1"])
    specs = load_specs(args.specs)
    clouds = args.os_cloud or [None]
    options = BuildOptions(
        log_dir=(args.log_dir or default_log_dir()).resolve(),
        keep_on_failure=args.keep_on_failure,
        time_scale=args.time_scale,
    )
    results = run_builds(specs, clouds, options=options, parallel=args.parallel,
                         json_output=args.json, region_name=args.os_region_name)
    if not args.json:
        print_summary(results)
    return combined_exit_code(results)


def run_builds(specs: list[BuildSpec], clouds: list[str | None], *, options: BuildOptions,
               parallel: int = 1, json_output: bool = False, region_name: str | None = None,
               listeners: list[Callable[[Event], None]] | None = None) -> list[BuildResult]:
    """Check credentials for every cloud, then run every (spec, cloud) build."""
    for cloud in clouds:  # wrong credentials are input errors, before anything is built
        check_auth(connect(cloud, region_name=region_name), cloud)
    bus = EventBus()
    view = JsonLines() if json_output else HumanView()
    bus.subscribe(view)
    for listener in listeners or []:
        bus.subscribe(listener)
    cancel = CancelToken()
    jobs = [(spec, cloud) for spec in specs for cloud in clouds]

    def one(spec: BuildSpec, cloud: str | None) -> BuildResult:
        conn = connect(cloud, region_name=region_name)
        try:
            return run_build(spec, conn, options=options, bus=bus, cancel=cancel,
                             cloud_name=cloud)
        finally:
            conn.close()

    try:
        with _signals_cancel(cancel), ThreadPoolExecutor(max_workers=parallel) as pool:
            futures: list[Future[BuildResult]] = [pool.submit(one, s, c) for s, c in jobs]
            pending = set(futures)
            while pending:
                # Short waits keep the main thread free to take SIGINT/SIGTERM.
                _done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            return [f.result() for f in futures]
    finally:
        view.close()


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
        if result.error is None:
            print(f"{result.family}{where}: built image {result.image_name} "
                  f"({result.image_id}) in {result.duration:.0f}s")
        else:
            lines = result.error.lines()
            print(f"{result.family}{where}: build {result.build_id} failed: {lines[0]}",
                  file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
            if result.kept:
                print("  kept for debugging (delete when done): " + ", ".join(result.kept),
                      file=sys.stderr)
        if result.report_path:
            print(f"  report: {result.report_path}",
                  file=sys.stdout if result.error is None else sys.stderr)
