"""`osbuild report BUILD_ID|REPORT_JSON`: one build's self-contained HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuild.cli import options
from osbuild.errors import InvalidInput


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write a build's HTML report: the result and its reason, a timeline of steps and "
        "guest stages, the console transcript with its markers, the resources created and "
        "deleted, API calls by service and the published image. One file, nothing loaded "
        "from the network. Every build writes it beside its report.json; this command "
        "writes it again (e.g. after an upgrade) or elsewhere. Exit 2: no such build or "
        "report.")
    parser.add_argument("build", metavar="BUILD_ID|REPORT_JSON",
                        help="a build id (found through the state folder) or a report.json")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="where to write the page (default: report.html beside the "
                        "report.json)")
    options.add_state_dir(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from osbuild.report.build import load_report, write_build_html
    from osbuild.report.locate import find_report, spec_secrets

    path = find_report(args.build, state_dir=args.state_dir)
    try:
        written = write_build_html(path, secrets=spec_secrets(load_report(path)), out=args.html)
    except OSError as exc:
        raise InvalidInput([f"{args.html or path.parent}: cannot write the page: "
                            f"{exc.strerror or exc}"]) from None
    print(written)
    return 0
