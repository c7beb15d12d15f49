"""Options several sub-commands share, each declared once."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from osbuild.durations import parse_duration


def duration(value: str) -> float:
    """An argparse type: ``90m``, ``6h``, ``2d``... in seconds."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _OneCloud(argparse.Action):
    """``--os-cloud`` of a command that works in one cloud: given twice is a usage error
    (the last one silently won, and a listing of one cloud passed for both)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None and before != values:
            parser.error(f"--os-cloud: this command works in one cloud; got {before} and "
                         f"{values}")
        setattr(namespace, self.dest, values)


def add_cloud(parser: argparse.ArgumentParser, *, several: bool = False,
              default_help: str = "$OS_CLOUD or OS_* variables", region: bool = True) -> None:
    """``--os-cloud`` (repeatable with ``several``: a list) and ``--os-region-name``."""
    more = "; repeat for several clouds" if several else ""
    parser.add_argument("--os-cloud", action="append" if several else _OneCloud,
                        dest="os_cloud", default=None, metavar="NAME",
                        help=f"cloud from clouds.yaml (default: {default_help}){more}")
    if region:
        parser.add_argument("--os-region-name", default=os.environ.get("OS_REGION_NAME"),
                            metavar="REGION", help="region (default: $OS_REGION_NAME)")


def add_json(parser: argparse.ArgumentParser, *, events: bool = True) -> None:
    parser.add_argument("--json", action="store_true",
                        help="one JSON event per line on stdout (for cron and log shipping)"
                        if events else "print the result as JSON")


def add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="build state, locks and reports (default "
                        "$XDG_STATE_HOME/osbuild)")


def add_state(parser: argparse.ArgumentParser) -> None:
    """Where a build keeps its state, logs and outcome: ``build`` and ``resume``."""
    add_state_dir(parser)
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="where console transcripts and reports go "
                        "(default <state dir>/builds)")
    parser.add_argument("--metrics-file", type=Path, default=None, metavar="PATH",
                        help="Prometheus textfile to record the outcome in "
                        "(node_exporter textfile collector)")


def add_keep_on_failure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-on-failure", action="store_true",
                        help="keep the builder server and its volumes when a build fails "
                             "before its disk is captured (after capture they are released)")


def _time_scale(value: str) -> float:
    try:
        scale = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not scale > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return scale


def add_time_scale(parser: argparse.ArgumentParser) -> None:
    from osbuild.cloud.clock import PACE_KEY

    parser.add_argument("--time-scale", type=_time_scale, default=None, metavar="FACTOR",
                        help="the cloud's clock runs FACTOR times faster than real time; "
                        f"overrides its clouds.yaml entry's {PACE_KEY} (the simulated cloud "
                        "writes it there); default: that entry's, else 1")


def pace_override(args: argparse.Namespace) -> dict[str, Any]:
    """Settings the command line adds to the clouds.yaml entry (the cloud's pace)."""
    from osbuild.cloud.clock import PACE_KEY

    scale = getattr(args, "time_scale", None)
    return {PACE_KEY: scale} if scale is not None else {}


T = TypeVar("T")


def each_cloud(args: argparse.Namespace, per_cloud: Callable[[Any, str], T],
               ) -> tuple[dict[str, T], list[str]]:
    """``per_cloud(conn, name)`` in every ``--os-cloud`` (read-only commands: status, gc).

    A cloud that cannot be reached or refuses the credentials is a problem line, and the
    others are still done: one region down must not blank the status page or stop the gc
    of the rest. Raises as before when no cloud could be reached."""
    from osbuild.cloud.connect import check_auth, cloud_identity, connect
    from osbuild.errors import InvalidInput, OsbuildError

    results: dict[str, T] = {}
    failures: list[OsbuildError] = []
    for cloud in list(args.os_cloud or [None]):
        try:
            conn = connect(cloud, region_name=args.os_region_name, **pace_override(args))
            check_auth(conn, cloud)
        except OsbuildError as exc:
            failures.append(exc)
            continue
        try:
            name = cloud_identity(conn, cloud)
            results[name] = per_cloud(conn, name)
        finally:
            conn.close()
    if failures and not results:
        if len(failures) == 1:
            raise failures[0]
        raise InvalidInput([line for exc in failures for line in exc.lines()])
    return results, [line for exc in failures for line in exc.lines()]
