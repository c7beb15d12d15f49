"""`osbuild resume BUILD_ID`: finish a build whose orchestrator died (crash, reboot, SIGKILL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuild.cli.build import (
    _signals_cancel,
    add_output_arguments,
    add_state_arguments,
    add_time_scale_argument,
    default_log_dir,
    pace_override,
    print_summary,
    report_outcome,
)
from osbuild.cli.output import HumanView, JsonLines
from osbuild.cloud.connect import check_auth, cloud_identity, connect
from osbuild.errors import LockBusy
from osbuild.ops.lock import build_lock
from osbuild.ops.state import StateStore, default_state_dir
from osbuild.pipeline import BuildOptions, CancelToken, EventBus
from osbuild.pipeline.events import Event, EventName
from osbuild.pipeline.resume import load_resumable, resume_build
from osbuild.pipeline.run import skipped_result


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resume", help="finish a build whose orchestrator died",
        description="Re-attach to a build from its state file: adopt what it created, "
        "watch the builder until it powers off (or capture it at once if it already did "
        "after sysprep), capture, publish, verify, promote and clean up. Exit codes as for "
        "`osbuild build`.",
    )
    parser.add_argument("build_id", metavar="BUILD_ID")
    parser.add_argument("--os-cloud", default=None, metavar="NAME",
                        help="cloud from clouds.yaml (default: the one the build ran in)")
    parser.add_argument("--os-region-name", default=None, metavar="REGION")
    add_output_arguments(parser)
    parser.add_argument("--keep-on-failure", action="store_true",
                        help="keep the builder server and its volumes when the build fails")
    parser.add_argument("--force", action="store_true",
                        help="resume even though the spec file changed since the build "
                        "started: the rest of the build follows the spec as it is now")
    add_state_arguments(parser)
    add_time_scale_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    state_dir = (args.state_dir or default_state_dir()).resolve()
    store = StateStore(state_dir)
    state, spec = load_resumable(store, args.build_id, force=args.force)
    # The clouds.yaml name the build connected with; None: the OS_* variables.
    os_cloud = args.os_cloud or (state.os_cloud if state.os_cloud is not None
                                 else state.cloud) or None
    log_dir = args.log_dir or (Path(state.log_dir) if state.log_dir else None)
    options = BuildOptions(
        log_dir=(log_dir or default_log_dir(state_dir)).resolve(),
        keep_on_failure=args.keep_on_failure,
        state_dir=state_dir,
        lock_family=True,
    )
    conn = connect(os_cloud, region_name=args.os_region_name, **pace_override(args))
    check_auth(conn, os_cloud)
    cloud = cloud_identity(conn, os_cloud)
    bus = EventBus()
    view = JsonLines() if args.json else HumanView()
    bus.subscribe(view)
    cancel = CancelToken()
    lock = build_lock(conn, locks_dir=store.locks_dir, cloud=cloud,
                      family=spec.name, build_id=state.build_id, cancel=cancel.event)
    try:
        with _signals_cancel(cancel), lock:
            result = resume_build(state, spec, conn, store=store, options=options, bus=bus,
                                  cancel=cancel, cloud_name=cloud, os_cloud=os_cloud)
    except LockBusy as exc:
        result = skipped_result(spec, cloud, state.build_id, str(exc))
        bus.publish(Event(EventName.BUILD_SKIPPED, state.build_id, spec.name,
                          {"reason": result.skipped, "cloud": cloud}))
    finally:
        view.close()
        conn.close()
    report_outcome(result, spec, metrics_file=args.metrics_file, bus=bus)
    if not args.json:
        print_summary([result])
    return result.exit_code
