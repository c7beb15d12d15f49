"""`osbuild images`: list a family, prune it per policy, promote an image, roll back."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

from openstack.connection import Connection

from osbuild.cli.build import add_time_scale_argument
from osbuild.cloud.connect import check_auth, connect
from osbuild.errors import InvalidInput
from osbuild.images import (
    Decision,
    FamilyImage,
    RotationPolicy,
    list_family,
    promote,
    prune,
    rollback,
)
from osbuild.spec import format_duration, load_spec, parse_duration

ACTIONS = ("list", "prune", "promote", "rollback")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "images", help="list, prune, promote and roll back image families",
        description="osbuild images SPEC|--family NAME: list a family. "
        "osbuild images prune SPEC|--family NAME [--dry-run]: hide and delete per policy. "
        "osbuild images promote ID: make a verified image current. "
        "osbuild images rollback --family NAME: make the previous verified image current.",
    )
    parser.add_argument("words", nargs="*", metavar="[ACTION] SPEC|ID",
                        help=f"action ({', '.join(ACTIONS)}; default list), then a spec "
                        "file or, for promote, an image ID")
    parser.add_argument("--family", metavar="NAME", help="the image family (spec `name`)")
    parser.add_argument("--os-cloud", metavar="NAME", default=None,
                        help="cloud from clouds.yaml (default: $OS_CLOUD or OS_* variables)")
    parser.add_argument("--os-region-name", default=os.environ.get("OS_REGION_NAME"),
                        metavar="REGION")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--dry-run", action="store_true",
                        help="prune: only say what would be hidden or deleted")
    parser.add_argument("--keep", type=int, metavar="N",
                        help="prune: keep the newest N (default: the spec's image.keep, or 3)")
    parser.add_argument("--max-age", metavar="DURATION",
                        help="prune: delete images older than this (e.g. 90d)")
    parser.add_argument("--superseded", choices=("hide", "delete"),
                        help="prune: what happens to images older than the current one")
    add_time_scale_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ACTIONS else "list"
    conn = connect(args.os_cloud, region_name=args.os_region_name)
    try:
        check_auth(conn, args.os_cloud)
        if action == "promote":
            if len(words) != 1:
                raise InvalidInput(["images promote: give exactly one image ID"])
            image = promote(conn, words[0], time_scale=args.time_scale)
            return _changed(args, "promoted", image)
        if action == "rollback":
            if words or not args.family:
                raise InvalidInput(["images rollback: give --family NAME (and nothing else)"])
            image = rollback(conn, args.family, time_scale=args.time_scale)
            return _changed(args, "rolled back to", image)
        family, policy = _family_and_policy(args, words)
        if action == "prune":
            return _prune(args, conn, family, policy)
        return _list(args, conn, family)
    finally:
        conn.close()


def _family_and_policy(args: argparse.Namespace,
                       words: list[str]) -> tuple[str, RotationPolicy]:
    if len(words) > 1 or (words and args.family) or not (words or args.family):
        raise InvalidInput(["images: give one spec file or --family NAME"])
    if words:
        spec = load_spec(words[0])
        family, policy = spec.name, RotationPolicy.from_spec(spec.image)
    else:
        family, policy = args.family, RotationPolicy()
    try:
        max_age = parse_duration(args.max_age) if args.max_age else policy.max_age
    except ValueError as exc:
        raise InvalidInput([f"--max-age: {exc}"]) from None
    if args.keep is not None and args.keep < 1:
        raise InvalidInput(["--keep must be at least 1"])
    policy = RotationPolicy(
        keep=args.keep if args.keep is not None else policy.keep,
        max_age=max_age,
        superseded=args.superseded or policy.superseded,
    )
    return family, policy


def _list(args: argparse.Namespace, conn: Connection, family: str) -> int:
    images = list_family(conn, family, time_scale=args.time_scale)
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps({"family": family, "images": [i.to_dict(now) for i in images]},
                         indent=2))
        return 0
    if not images:
        print(f"{family}: no images")
        return 0
    rows = [["VERSION", "ID", "NAME", "STATUS", "VERIFY", "CURRENT", "HIDDEN", "AGE", "IN USE"]]
    for image in images:
        age = image.age(now)
        rows.append([
            image.version, image.id, image.name, image.status, image.verify,
            "yes" if image.current else "", "yes" if image.hidden else "",
            format_duration(age) if age is not None and age > 0 else "-",
            str(image.in_use),
        ])
    _table(rows)
    return 0


def _prune(args: argparse.Namespace, conn: Connection, family: str,
           policy: RotationPolicy) -> int:
    decisions = prune(conn, family, policy, dry_run=args.dry_run, time_scale=args.time_scale)
    if args.json:
        print(json.dumps({"family": family, "dry_run": args.dry_run,
                          "decisions": [_decision_dict(d) for d in decisions]}, indent=2))
        return 0
    verb = {"delete": "would delete", "hide": "would hide"} if args.dry_run else \
        {"delete": "deleted", "hide": "hid"}
    changed = [d for d in decisions if d.action != "keep"]
    for decision in decisions:
        what = verb.get(decision.action, "kept")
        print(f"{what} {decision.image.id} {decision.image.name} ({decision.reason})")
    if not changed:
        print(f"{family}: nothing to change")
    return 0


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {"action": decision.action, "reason": decision.reason,
            "image": decision.image.to_dict()}


def _changed(args: argparse.Namespace, verb: str, image: FamilyImage) -> int:
    if args.json:
        print(json.dumps({"action": verb, "image": image.to_dict()}, indent=2))
    else:
        print(f"{image.family}: {verb} {image.name} ({image.id}, version {image.version})")
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
