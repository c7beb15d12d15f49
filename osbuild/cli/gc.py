"""`osbuild gc`: remove what dead builds left behind, safely from cron next to running builds."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from osbuild.cli import jsonout, options
from osbuild.durations import format_duration
from osbuild.errors import EXIT_INVALID_INPUT, CleanupIncomplete
from osbuild.naming import GC_OLDER_THAN

if TYPE_CHECKING:
    from osbuild.unattended.gc import GcResult, Kept, Resource


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
    from osbuild.unattended.gc import collect
    from osbuild.unattended.state import StateStore

    store = StateStore(args.state_dir)
    results, unreachable = options.each_cloud(
        args, lambda conn, name: collect(conn, older_than=args.older_than,
                                         dry_run=args.dry_run, store=store, cloud=name))
    if args.json:
        # One JSON object on one line, as every --json output (cron mail, log shipping);
        # a cloud it could not reach is an entry with its error.
        out: dict[str, Any] = {name: {**r.to_dict(), "unreadable_state_files": store.unreadable}
                               for name, r in results.items()}
        if unreachable:
            out["unreachable_clouds"] = unreachable
        jsonout.print_json(out)
    else:
        from osbuild.cli.output import warn_unreadable_states

        warn_unreadable_states(store.unreadable)
        for name, result in results.items():
            _print_text(name, result, show_cloud=len(results) > 1 or bool(unreachable))
        for line in unreachable:
            print(f"osbuild: error: {line}", file=sys.stderr)
    leftovers = [f"{f.resource.kind} {f.resource.id} ({f.resource.name}): {f.error}"
                 for r in results.values() for f in r.failed]
    if leftovers:
        raise CleanupIncomplete(leftovers)
    return EXIT_INVALID_INPUT if unreachable else 0


def _print_text(cloud: str, result: GcResult, *, show_cloud: bool) -> None:
    """What went (or would go) and what stayed for a reason worth knowing, one line each;
    published images, kept every run, only in the summary's count (cron mails this hourly;
    --json has every decision)."""
    prefix = f"[{cloud}] " if show_cloud else ""
    verb = "would remove" if result.dry_run else "removed"
    for r in result.removed:
        print(f"{prefix}{verb} {_named(r)} (build {r.build_id}, "
              f"{format_duration(max(r.age_seconds, 0))} old)")
    for k in result.kept:
        if k.kept_for == "running":
            print(f"{prefix}kept {_named(k.resource)}: {k.reason}")
    for build_id, resources in _by_build(k for k in result.kept if k.kept_for == "resume"):
        newest = format_duration(max(0.0, min(r.age_seconds for r in resources)))
        print(f"{prefix}kept dead build {build_id}'s {_count(len(resources), 'resource')} "
              f"for resume (newest {newest} old, younger than "
              f"{format_duration(result.older_than)}): " + ", ".join(map(_named, resources)))
    for build_id in result.abandoned_builds:
        # The resources it removed above, or another host's gc before (README's words).
        mine = sum(1 for r in result.removed if r.build_id == build_id)
        why = (f"its {_count(mine, 'resource')} removed above, nothing is left to resume"
               if mine else "nothing of it is left to resume")
        print(f"{prefix}marked dead build {build_id} failed: {why}")
    counts = Counter(k.kept_for for k in result.kept)
    summary = f"{prefix}{len(result.removed)} {verb}, {len(result.kept)} kept"
    parts = [f"{counts['running']} of running builds" if counts["running"] else "",
             f"{counts['resume']} for resume" if counts["resume"] else "",
             (f"{counts['young']} younger than {format_duration(result.older_than)}"
              if counts["young"] else ""),
             _count(counts["published"], "published image") if counts["published"] else ""]
    if any(parts):
        summary += f" ({', '.join(p for p in parts if p)})"
    if result.failed:
        summary += f", {len(result.failed)} failed"
    print(summary)


def _by_build(kept: Iterable[Kept]) -> list[tuple[str, list[Resource]]]:
    groups: dict[str, list[Resource]] = {}
    for k in kept:
        groups.setdefault(k.resource.build_id, []).append(k.resource)
    return sorted(groups.items())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _named(resource: Resource) -> str:
    """Kind, id and name; a builder's port has no name (Nova made it), a keypair's name is
    its id."""
    name = resource.name if resource.name != resource.id else ""
    return " ".join(part for part in (resource.kind, resource.id, name) if part)
