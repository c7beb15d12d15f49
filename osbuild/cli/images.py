"""`osbuild images`: list a family, prune it per policy, promote an image, roll back."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openstack.connection import Connection

from osbuild.cli.build import (
    _signals_cancel,
    add_time_scale_argument,
    default_log_dir,
    pace_override,
)
from osbuild.cli.output import HumanView, JsonLines
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
from osbuild.images.family import from_glance
from osbuild.images.manage import find_image
from osbuild.ops.state import StateStore, default_state_dir
from osbuild.pipeline import BuildOptions, CancelToken, EventBus
from osbuild.pipeline.reverify import reverify
from osbuild.spec import BuildSpec, format_duration, load_spec, parse_duration

ACTIONS = ("list", "prune", "promote", "rollback", "verify")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "images", help="list, prune, promote and roll back image families",
        description="osbuild images SPEC|--family NAME: list a family. "
        "osbuild images prune SPEC|--family NAME [--dry-run]: hide and delete per policy. "
        "osbuild images promote IMAGE: make a verified image current. "
        "osbuild images rollback SPEC|--family NAME: make the previous verified image "
        "current. osbuild images verify IMAGE [SPEC]: run the boot test of a kept image "
        "again (SPEC: the family's spec, found from the build's state when omitted). "
        "IMAGE is an ID or a name; a name several images share is refused with the list.",
    )
    parser.add_argument("words", nargs="*", metavar="[ACTION] SPEC|IMAGE",
                        help=f"action ({', '.join(ACTIONS)}; default list), then a spec "
                        "file or, for promote and verify, an image ID or name")
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
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="verify: where builds keep their state and reports "
                        f"(default {default_state_dir()})")
    add_time_scale_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ACTIONS else "list"
    conn = connect(args.os_cloud, region_name=args.os_region_name, **pace_override(args))
    try:
        check_auth(conn, args.os_cloud)
        if action == "promote":
            if len(words) != 1:
                raise InvalidInput(["images promote: give exactly one image ID or name"])
            image = promote(conn, words[0])
            return _changed(args, "promoted", image)
        if action == "verify":
            return _verify(args, conn, words)
        family, policy = _family_and_policy(args, words)
        if action == "rollback":
            image = rollback(conn, family)
            return _changed(args, "rolled back to", image)
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


def _verify(args: argparse.Namespace, conn: Connection, words: list[str]) -> int:
    if not 1 <= len(words) <= 2 or args.family:
        raise InvalidInput(["images verify: give an image ID or name, then optionally the "
                            "family's spec file"])
    spec = load_spec(words[1]) if len(words) == 2 else _spec_of_build(conn, words[0], args)
    state_dir = (args.state_dir or default_state_dir()).resolve()
    options = BuildOptions(log_dir=default_log_dir(state_dir).resolve())
    bus = EventBus()
    view = JsonLines() if args.json else HumanView()
    bus.subscribe(view)
    cancel = CancelToken()
    try:
        with _signals_cancel(cancel):
            result = reverify(spec, conn, words[0], options=options, bus=bus, cancel=cancel,
                              cloud_name=args.os_cloud)
    finally:
        view.close()
    if not args.json:
        if result.error is None:
            print(f"{spec.name}: image {result.image_name} ({result.image_id}) passed its "
                  f"boot test; make it current with: osbuild images promote {result.image_id}")
        else:
            lines = result.error.lines()
            print(f"{spec.name}: image {words[0]} failed its boot test again: {lines[0]}",
                  file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
        if result.report_path:
            print(f"  report: {result.report_path}")
    return result.exit_code


def _spec_of_build(conn: Connection, image: str, args: argparse.Namespace) -> BuildSpec:
    """The spec the image was built from, as its build's state file on this host names it."""
    found = from_glance(find_image(conn, image))
    store = StateStore((args.state_dir or default_state_dir()).resolve())
    try:
        path = store.load(found.build_id).spec_path if found.build_id else ""
    except Exception:
        path = ""
    if not path:
        raise InvalidInput([f"image {image}: no state of build {found.build_id or '?'} on "
                            "this host names its spec; give it: osbuild images verify "
                            f"{image} SPEC"])
    return load_spec(path)


def _list(args: argparse.Namespace, conn: Connection, family: str) -> int:
    images = list_family(conn, family)
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
    decisions = prune(conn, family, policy, dry_run=args.dry_run)
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
