"""`osbuild status`: one row per image family and cloud, read from the state folder and Glance."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from osbuild.cli import jsonout, options
from osbuild.errors import EXIT_INVALID_INPUT, InvalidInput

if TYPE_CHECKING:
    from osbuild.report.status import FamilyStatus


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "For each image family in each cloud: the current image and its age, the last "
        "build's result, duration and reason, the next image in line (hidden, verified or "
        "not), the leftovers `osbuild gc` would remove, and the trend of the last "
        "successful builds' durations. Reads the state folder and Glance; changes nothing.")
    options.add_cloud(parser, several=True)
    options.add_state_dir(parser)
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="write the status as a self-contained HTML page")
    options.add_json(parser, events=False)
    options.add_time_scale(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from osbuild.report.status import cloud_status
    from osbuild.unattended.state import StateStore

    store = StateStore(args.state_dir)
    now = datetime.now(UTC)
    found, unreachable = options.each_cloud(
        args, lambda conn, name: cloud_status(conn, name, store, now))
    clouds = list(found)
    rows: list[FamilyStatus] = [row for cloud_rows in found.values() for row in cloud_rows]
    if args.html is not None:
        from osbuild.report.status_page import write_status_html

        try:
            written = write_status_html(args.html, rows, clouds=clouds, state_dir=store.root,
                                        now=now, unreachable=unreachable)
        except OSError as exc:  # as `osbuild report --html` says it
            raise InvalidInput([f"{args.html}: cannot write the page: "
                                f"{exc.strerror or exc}"]) from None
        if not args.json:  # stdout is the JSON document then
            print(written)
    if args.json:
        jsonout.print_json({"generated": now.isoformat(timespec="seconds"), "clouds": clouds,
                            "families": [row.to_dict(now) for row in rows],
                            "unreadable_state_files": store.unreadable,
                            "unreachable_clouds": unreachable})
    else:
        from osbuild.cli.output import warn_unreadable_states

        warn_unreadable_states(store.unreadable)
        if args.html is None:
            from osbuild.report.status_page import status_table

            status_table(rows, now=now, print_to=sys.stdout, unreachable=unreachable)
        for line in unreachable:
            print(f"osbuild: error: {line}", file=sys.stderr)
    # The clouds that answered are shown; the others make it exit 2 (in --json, named in
    # the document: stdout stays one JSON document and stderr stays quiet).
    return EXIT_INVALID_INPUT if unreachable else 0
