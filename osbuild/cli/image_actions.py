"""What `osbuild images ACTION` does (the arguments are in :mod:`osbuild.cli.images`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from osbuild.cli import jsonout, options
from osbuild.cli.build import print_signal
from osbuild.cli.output import event_view
from osbuild.cloud.connect import Connection, check_auth, cloud_identity, connect
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
from osbuild.images.manage import capture_name_reason, find_image
from osbuild.pipeline import BuildOptions, CancelToken, EventBus
from osbuild.pipeline.reverify import reverify
from osbuild.spec import BuildSpec, format_duration, load_spec, parse_duration
from osbuild.unattended.jobs import default_log_dir, signals_cancel
from osbuild.unattended.state import StateStore, default_state_dir


@contextmanager
def _connected(args: argparse.Namespace) -> Iterator[Connection]:
    conn = connect(args.os_cloud, region_name=args.os_region_name,
                   **options.pace_override(args))
    try:
        # Glance is what every action reads; a region the cloud lacks has none of them.
        check_auth(conn, args.os_cloud, services=("image",))
        yield conn
    finally:
        conn.close()


def run_list(args: argparse.Namespace) -> int:
    family, _policy = _family_and_policy(args)
    with _connected(args) as conn:
        return _list(args, conn, family)


def run_prune(args: argparse.Namespace) -> int:
    family, policy = _family_and_policy(args)  # bad input is told before connecting
    with _connected(args) as conn:
        return _prune(args, conn, family, policy)


def run_promote(args: argparse.Namespace) -> int:
    family = load_spec(args.spec).name if args.spec else None
    with _connected(args) as conn:
        before = from_glance(find_image(conn, args.image))
        image = promote(conn, args.image, spec=partial(_spec_for_promote, args), family=family)
    if before.current and not before.rolled_back_at:
        # Idempotent (exit 0), but said: "promoted" read as if it had been another image.
        return _changed(args, "already current:", image)
    return _changed(args, "promoted", image)


def _spec_for_promote(args: argparse.Namespace, image: FamilyImage) -> BuildSpec:
    """Asked for only when the image still has its capture name."""
    if args.spec:
        return load_spec(args.spec)
    return _spec_of_build(image, args, command="promote",
                          why=f"{capture_name_reason(image)}, and")


def run_rollback(args: argparse.Namespace) -> int:
    family, _policy = _family_and_policy(args)
    with _connected(args) as conn:
        done = rollback(conn, family)
    if not args.json:
        for image in done.passed_over:
            print(f"{family}: passed over {image.name} ({image.id}): rolled back from at "
                  f"{image.rolled_back_at}")
    return _changed(args, "rolled back to", done.image,
                    rolled_back_from=done.rolled_back_from,
                    passed_over=done.passed_over)


def run_verify(args: argparse.Namespace) -> int:
    with _connected(args) as conn:
        return _verify(args, conn)


def _family_and_policy(args: argparse.Namespace) -> tuple[str, RotationPolicy]:
    if (args.spec and args.family) or not (args.spec or args.family):
        raise InvalidInput([f"images {args.images_command}: give one spec file or "
                            "--family NAME"])
    if args.spec:
        spec = load_spec(args.spec)
        family, policy = spec.name, RotationPolicy.from_spec(spec.image)
        if args.os_cloud is None and spec.clouds:
            # As `osbuild build SPEC` does without --os-cloud: the spec's clouds.
            if len(spec.clouds) > 1:
                raise InvalidInput([f"images {args.images_command}: {args.spec} builds in "
                                    f"{len(spec.clouds)} clouds ({', '.join(spec.clouds)}); "
                                    "give one with --os-cloud NAME"])
            args.os_cloud = spec.clouds[0]
    else:
        family, policy = args.family, RotationPolicy()
    if args.images_command != "prune":
        return family, policy
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


def _verify(args: argparse.Namespace, conn: Connection) -> int:
    spec = load_spec(args.spec) if args.spec else _spec_of_build(
        from_glance(find_image(conn, args.image)), args, command="verify")
    state_dir = (args.state_dir or default_state_dir()).resolve()
    build_options = BuildOptions(log_dir=default_log_dir(state_dir).resolve())
    bus = EventBus()
    cancel = CancelToken()
    with event_view(json_output=args.json) as view:
        bus.subscribe(view)
        with signals_cancel(cancel, on_signal=print_signal):
            # The cloud as `osbuild build` names it: --os-cloud, else $OS_CLOUD or the OS_*
            # variables' auth URL (it was null for a cloud from $OS_CLOUD).
            result = reverify(spec, conn, args.image, options=build_options, bus=bus, cancel=cancel,
                              cloud_name=cloud_identity(conn, args.os_cloud))
    if not args.json:
        if result.error is None:
            current = result.image_id is not None and from_glance(
                find_image(conn, result.image_id)).current
            then = ("it is the family's current image" if current else
                    f"make it current with: osbuild images promote {result.image_id}")
            print(f"{spec.name}: image {result.image_name} ({result.image_id}) passed its "
                  f"boot test; {then}")
        else:
            lines = result.error.lines()
            print(f"{spec.name}: image {args.image} failed its boot test again: {lines[0]}",
                  file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
        if result.report_path:
            print(f"  report: {result.report_path}")
            page = result.report_path.with_name("report.html")
            if page.is_file():
                print(f"  page: {page}")
    return result.exit_code


def _spec_of_build(found: FamilyImage, args: argparse.Namespace, *, command: str,
                   why: str = "") -> BuildSpec:
    """The spec the image was built from, as its build's state file on this host names it."""
    store = StateStore((args.state_dir or default_state_dir()).resolve())
    try:
        path = store.load(found.build_id).spec_path if found.build_id else ""
    except Exception:
        path = ""
    if not path:
        raise InvalidInput([f"image {args.image}: {why + ' ' if why else ''}no state of build "
                            f"{found.build_id or '?'} on this host names its spec; give it: "
                            f"osbuild images {command} {args.image} SPEC"])
    return load_spec(path)


def _list(args: argparse.Namespace, conn: Connection, family: str) -> int:
    images = list_family(conn, family)
    now = datetime.now(UTC)
    if args.json:
        jsonout.print_json({"family": family, "images": [i.to_dict(now) for i in images]})
        return 0
    if not images:
        print(f"{family}: no images")
        return 0
    rows = [["VERSION", "ID", "NAME", "STATUS", "MADE BY", "VERIFY", "CURRENT", "HIDDEN", "AGE",
             "IN USE"]]
    for image in images:
        age = image.age(now)
        rows.append([
            image.version, image.id, image.name, image.status, image.made_by, image.verify,
            "yes" if image.current else "rolled back" if image.rolled_back_at else "",
            "yes" if image.hidden else "",
            format_duration(age) if age is not None and age >= 0 else "-",
            str(image.in_use),
        ])
    _table(rows)
    return 0


def _prune(args: argparse.Namespace, conn: Connection, family: str,
           policy: RotationPolicy) -> int:
    decisions = prune(conn, family, policy, dry_run=args.dry_run)
    if args.json:
        jsonout.print_json({"family": family, "dry_run": args.dry_run,
                            "decisions": [_decision_dict(d) for d in decisions]})
        return 0
    verb = {"delete": "would delete", "hide": "would hide"} if args.dry_run else \
        {"delete": "deleted", "hide": "hid"}
    changed = [d for d in decisions if d.action != "keep"]
    for decision in decisions:
        what = verb.get(decision.action, "would keep" if args.dry_run else "kept")
        print(f"{what} {decision.image.id} {decision.image.name} ({decision.reason})")
    if not changed:
        print(f"{family}: nothing to change")
    return 0


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {"action": decision.action, "reason": decision.reason,
            "image": decision.image.to_dict()}


def _changed(args: argparse.Namespace, verb: str, image: FamilyImage, *,
             rolled_back_from: FamilyImage | None = None,
             passed_over: list[FamilyImage] | None = None) -> int:
    if args.json:
        out: dict[str, Any] = {"action": verb, "image": image.to_dict()}
        if rolled_back_from is not None:
            out["rolled_back_from"] = rolled_back_from.to_dict()
            out["passed_over"] = [i.to_dict() for i in passed_over or []]
        jsonout.print_json(out)
    else:
        print(f"{image.family}: {verb} {image.name} ({image.id}, version {image.version})")
        if rolled_back_from is not None:
            print(f"  {rolled_back_from.name} ({rolled_back_from.id}) is marked rolled back "
                  f"from: a later rollback passes over it (osbuild images promote "
                  f"{rolled_back_from.id} takes it back)")
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
