"""`osbuild resume BUILD_ID`: finish a build whose orchestrator died (crash, reboot, SIGKILL)."""

from __future__ import annotations

import argparse

from osbuild.cli import options
from osbuild.cli.build import DEFAULT_LOCK_WAIT, print_signal, print_summary


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Re-attach to a build from its state file: adopt what it created, "
        "watch the builder until it powers off (or capture it at once if it already did "
        "after sysprep), capture, publish, verify, promote and clean up. Exit codes as for "
        "`osbuild build`.")
    parser.add_argument("build_id", metavar="BUILD_ID")
    options.add_cloud(parser, default_help="the one the build ran in")
    options.add_json(parser)
    options.add_keep_on_failure(parser)
    parser.add_argument("--force", action="store_true",
                        help="resume even though the spec file changed since the build "
                        "started: the rest of the build follows the spec as it is now")
    parser.add_argument("--wait-lock", type=options.duration, nargs="?", default=None,
                        const=options.duration(DEFAULT_LOCK_WAIT), metavar="DURATION",
                        help="when another run builds the family in the cloud, wait up to "
                        f"DURATION (default {DEFAULT_LOCK_WAIT}) for it instead of skipping "
                        "(after BUILD_ID)")
    options.add_state(parser)
    options.add_time_scale(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from osbuild.cli.output import event_view  # these load openstacksdk: not for --help
    from osbuild.unattended.jobs import resume

    with event_view(json_output=args.json) as view:
        result = resume(build_id=args.build_id, state_dir=args.state_dir,
                        log_dir=args.log_dir, keep_on_failure=args.keep_on_failure,
                        os_cloud=args.os_cloud,
                        region_name=args.os_region_name, force=args.force,
                        listeners=[view], metrics_file=args.metrics_file,
                        on_signal=print_signal, wait_lock=args.wait_lock,
                        cloud_settings=options.pace_override(args))
    if not args.json:
        print_summary([result])
    return result.exit_code
