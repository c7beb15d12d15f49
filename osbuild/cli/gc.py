"""`osbuild gc`: remove what dead builds left behind, safely from cron next to running builds."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from osbuild.cli import options
from osbuild.durations import format_duration
from osbuild.errors import CleanupIncomplete
from osbuild.naming import GC_OLDER_THAN

if TYPE_CHECKING:
    from osbuild.unattended.gc import GcResult, Resource


def _older_than(value: str) -> float:
    if value.strip() in ("0", "0s"):
        return 0.0  # "everything that belongs to no running build"
    return options.duration(value)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Find every server, port, volume, image and keypair osbuild created "
        "that belongs to no running build and is older than --older-than, and delete it "
        "(servers first). Published images are never touched.")
    parser.add_argument("--older-than", type=_older_than, default=GC_OLDER_THAN,
                        metavar="DURATION",
                        help=f"only resources older than this (default "
                        f"{format_duration(GC_OLDER_THAN)}; 0 for any age)")
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    options.add_cloud(parser, several=True)
    options.add_state_dir(parser)
    options.add_json(parser, events=False)
    options.add_time_scale(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not above: they load openstacksdk, and `osbuild gc --help` should not.
    from osbuild.cloud.connect import check_auth, cloud_identity, connect
    from osbuild.unattended.gc import collect
    from osbuild.unattended.state import StateStore

    store = StateStore(args.state_dir)
    clouds: list[str | None] = list(args.os_cloud or [None])
    results: dict[str, GcResult] = {}
    for cloud in clouds:
        conn = connect(cloud, region_name=args.os_region_name, **options.pace_override(args))
        check_auth(conn, cloud)
        name = cloud_identity(conn, cloud)
        results[name] = collect(conn, older_than=args.older_than, dry_run=args.dry_run,
                                store=store)
    if args.json:
        # One JSON object on one line, as every --json output (cron mail, log shipping).
        json.dump({name: r.to_dict() for name, r in results.items()}, sys.stdout)
        print()
    else:
        for name, result in results.items():
            _print_text(name, result, show_cloud=len(results) > 1)
    leftovers = [f"{f.resource.kind} {f.resource.id} ({f.resource.name}): {f.error}"
                 for r in results.values() for f in r.failed]
    if leftovers:
        raise CleanupIncomplete(leftovers)
    return 0


def _print_text(cloud: str, result: GcResult, *, show_cloud: bool) -> None:
    prefix = f"[{cloud}] " if show_cloud else ""
    verb = "would remove" if result.dry_run else "removed"
    for r in result.removed:
        print(f"{prefix}{verb} {_named(r)} (build {r.build_id}, "
              f"{format_duration(max(r.age_seconds, 0))} old)")
    for k in result.kept:
        if not k.reason.startswith("younger than"):
            print(f"{prefix}kept {_named(k.resource)}: {k.reason}")
    young = sum(1 for k in result.kept if k.reason.startswith("younger than"))
    summary = f"{prefix}{len(result.removed)} {verb}, {len(result.kept)} kept"
    if young:
        summary += f" ({young} younger than {format_duration(result.older_than)})"
    if result.failed:
        summary += f", {len(result.failed)} failed"
    print(summary)


def _named(resource: Resource) -> str:
    """Kind, id and name; a builder's port has no name (Nova made it)."""
    return " ".join(part for part in (resource.kind, resource.id, resource.name) if part)
