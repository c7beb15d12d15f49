"""`osbuild build SPEC...`: build images, several concurrently, and report the outcome."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from osbuild.cli import jsonout, options
from osbuild.durations import format_duration
from osbuild.errors import EXIT_INVALID_INPUT, Interrupted, SpecError

if TYPE_CHECKING:
    from osbuild.pipeline import BuildResult
    from osbuild.spec import BuildSpec

# --wait-lock without a duration: as long as a build may take (builder.timeout's default).
DEFAULT_LOCK_WAIT = "6h"


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build Windows images in OpenStack from build specs. Exit codes: "
        "0 success or skipped (family busy, or unchanged with --if-changed), 1 build "
        "failed, 2 invalid input, 3 built but cleanup incomplete, 130 interrupted; several "
        "builds: the first of 3, 130, 1, 2 that any of them ended with. A run of several "
        "builds is preflighted whole before the first starts.")
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    options.add_cloud(parser, several=True)
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="build up to N specs at once (default 1)")
    options.add_json(parser)
    options.add_keep_on_failure(parser)
    options.add_state(parser)
    parser.add_argument("--wait-lock", type=lock_wait, nargs="?", default=None,
                        const=options.duration(DEFAULT_LOCK_WAIT), metavar="DURATION",
                        help="when another run builds the family in the cloud, wait up to "
                        f"DURATION (default {DEFAULT_LOCK_WAIT}) instead of skipping")
    parser.add_argument("--if-changed", action="store_true",
                        help="skip when the family's current verified image has the same "
                        "input fingerprint and is younger than image.max_age")
    parser.add_argument("--refresh", choices=("never", "auto", "always"), default="never",
                        help="patch the family's current image instead of installing from "
                        "the ISO: auto (the cron setting) when its inputs are unchanged, it "
                        "is younger than refresh.max_age and fewer than "
                        "refresh.max_generations refreshes in a row; always (exit 2 without "
                        "a current image); never (default: a full build)")
    options.add_time_scale(parser)
    parser.set_defaults(handler=run)


def lock_wait(value: str) -> float:
    """``--wait-lock``'s DURATION; a spec there was meant to follow it (argparse gives an
    optional value the next word: `--wait-lock SPEC...` is README's order)."""
    try:
        return options.duration(value)
    except argparse.ArgumentTypeError:
        if Path(value).is_file():
            raise argparse.ArgumentTypeError(
                f"{value!r} is a file, not a DURATION: give one (--wait-lock "
                f"{DEFAULT_LOCK_WAIT}) or put --wait-lock after the specs") from None
        raise


def run(args: argparse.Namespace) -> int:
    # Imported here: `osbuild build --help` must not pay for openstacksdk and pydantic.
    from osbuild.cli.output import event_view
    from osbuild.images.refresh import RefreshMode
    from osbuild.pipeline import BuildOptions
    from osbuild.unattended.jobs import default_log_dir, run_builds
    from osbuild.unattended.state import default_state_dir

    specs = _load_or_record(args)
    state_dir = (args.state_dir or default_state_dir()).resolve()
    build_options = BuildOptions(
        log_dir=(args.log_dir or default_log_dir(state_dir)).resolve(),
        keep_on_failure=args.keep_on_failure,
        state_dir=state_dir,
        lock_family=True,
    )
    with event_view(json_output=args.json) as view:
        outcome = run_builds(specs=specs, clouds=args.os_cloud, options=build_options,
                             parallel=args.parallel, region_name=args.os_region_name,
                             listeners=[view], wait_lock=args.wait_lock,
                             if_changed=args.if_changed, metrics_file=args.metrics_file,
                             refresh=RefreshMode(args.refresh),
                             on_signal=print_signal,
                             cloud_settings=options.pace_override(args))
    if not args.json:
        print_summary(outcome.results)
    return outcome.exit_code


def _load_or_record(args: argparse.Namespace) -> list[BuildSpec]:
    """Every spec; with one invalid, the run is refused (exit 2), and the builds of the
    valid ones are failures in the metrics file and their webhooks, as cron's alerts read."""
    from osbuild.cli.output import event_view
    from osbuild.spec import load_spec
    from osbuild.unattended.jobs import record_invalid_run

    specs, problems = [], []
    for path in args.specs:
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            problems.extend(exc.lines())
    if not problems:
        return specs
    if specs:
        with event_view(json_output=args.json) as view:
            record_invalid_run(specs=specs, clouds=args.os_cloud, problems=problems,
                               metrics_file=args.metrics_file, listeners=[view],
                               on_signal=print_signal)
        if args.json:
            # Its own line too: the build.failed events above name the valid families only.
            jsonout.print_error("build", problems, EXIT_INVALID_INPUT)
    raise SpecError(problems)


def print_signal(name: str, again: bool) -> None:
    notice = (f"osbuild: {name} again: still cleaning up, please wait" if again
              else f"osbuild: {name}: stopping and cleaning up")
    # One write, newline included: print() writes the text and its end apart, and a build
    # thread's event line written between them was glued to this one.
    sys.stderr.write(notice + "\n")
    sys.stderr.flush()


def resumed_note(result: BuildResult) -> str:
    """`` (resumed; this run took 41m11s)``: the duration is the whole build's."""
    if result.resumed_duration is None:
        return ""
    return f" (resumed; this run took {format_duration(result.resumed_duration)})"


def print_summary(results: Sequence[BuildResult]) -> None:
    from osbuild import redact
    from osbuild.cli.output import rotation_lines

    for result in results:
        where = f" in {result.cloud}" if result.cloud else ""
        if result.skipped:
            print(f"{result.family}{where}: skipped: {result.skipped}")
            continue
        if result.error is None:
            refreshed = (f", a refresh of {result.parent_image_id} (generation "
                         f"{result.generation})" if result.parent_image_id else "")
            print(f"{result.family}{where}: built image {result.image_name} "
                  f"({result.image_id}){refreshed} in {format_duration(result.duration)}"
                  + resumed_note(result))
            for line in rotation_lines(result.rotated):
                print(f"  {line}")
            if result.interrupted:
                print(f"  {result.interrupted} came when the build could no longer stop (its "
                      "promotion, its final cleanup, its webhook): the image is published; "
                      "exit 130")
        else:
            # A build's own error is redacted already; one that ended it before its
            # first step (a refresh refused, an interrupted lock wait) is not.
            lines = [redact.PROCESS.text(line) for line in result.error.lines()]
            failed = "" if isinstance(result.error, Interrupted) else "failed: "
            print(f"{result.family}{where}: build {result.build_id} {failed}{lines[0]}",
                  file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
            # A verified image a failed promotion kept is no debugging aid: it says so.
            images = [k for k in result.kept if k.startswith("image ")]
            others = [k for k in result.kept if not k.startswith("image ")]
            if images:
                print("  kept, hidden and not current: " + ", ".join(images), file=sys.stderr)
            if others:
                print("  kept for debugging (delete when done): " + ", ".join(others),
                      file=sys.stderr)
        if result.report_path:
            stream = sys.stdout if result.error is None else sys.stderr
            print(f"  report: {result.report_path}", file=stream)
            page = result.report_path.with_name("report.html")
            if page.is_file():
                print(f"  page: {page}", file=stream)
