"""`osbuild validate SPEC...`: check specs, and with --preflight or --os-cloud, against the
cloud too (what `osbuild build` checks before creating anything), creating nothing."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from osbuild.cli import jsonout, options
from osbuild.errors import CloudError, InvalidInput, OsbuildError, PreflightError, SpecError

if TYPE_CHECKING:
    from osbuild.spec import BuildSpec


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check build specs. Offline by default; with --preflight (or --os-cloud, or "
        "--refresh auto|always, which the cloud decides) also run "
        "each build's preflight against the cloud, as `osbuild build` would before creating "
        "anything: ISOs, flavor, network, quotas, the refresh choice. Nothing is created and "
        "no lock is taken. Exit codes: 0 valid, 2 invalid.")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object (every spec checked and "
                        "every problem) on stdout; the exit code is the same")
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    parser.add_argument("--preflight", action="store_true",
                        help="also check against the cloud (--os-cloud, else each spec's "
                        "clouds, else $OS_CLOUD or OS_* variables)")
    options.add_cloud(parser, several=True)
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="check the quotas of N builds at once, as `build --parallel N`")
    parser.add_argument("--refresh", choices=("never", "auto", "always"), default="never",
                        help="check the build `build --refresh` would run (default never; "
                        "auto or always implies --preflight: the cloud's current image "
                        "decides)")
    options.add_time_scale(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """An ok line for every valid spec (and build), then every problem of the others, the
    valid specs checked against the cloud even when another spec is invalid; with --json,
    all of it as one object on stdout and nothing on stderr (the exit code is the same)."""
    from osbuild.spec import load_spec  # pydantic: not for --help

    # The refresh choice reads the family's current image: asking for it is asking online
    # (it was silently ignored offline).
    online = bool(args.preflight or args.os_cloud or args.refresh != "never")
    problems: list[str] = []
    specs: list[BuildSpec] = []
    typed: dict[str, str] = {}  # a spec's resolved path -> as the operator typed it
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            problems.extend(exc.lines())
            continue
        specs.append(spec)
        typed[str(spec.source_path)] = str(path)
    checked = [{"spec": str(spec.source_path), "name": spec.name,
                "image_name": spec.windows.image_name} for spec in specs]
    error: OsbuildError | None = SpecError(problems) if problems else None
    if online and specs:
        try:
            checked, cloud_problems = _preflight(args, specs, typed)
        except (InvalidInput, CloudError) as exc:  # no cloud, refused credentials, unreachable
            checked, cloud_problems = [], exc.lines()
            if error is None:
                error = exc  # its own exit code: 1 for a cloud that did not answer
        problems.extend(cloud_problems)
        if error is None and cloud_problems:
            error = PreflightError(cloud_problems)
        elif isinstance(error, SpecError):
            error = SpecError(problems)
    if args.json:
        jsonout.print_json({"valid": error is None, "ok": checked, "problems": problems})
        return error.exit_code if error is not None else 0
    if not online:
        for ok in checked:
            # As its problems would be named: the path as typed.
            shown = typed.get(ok["spec"], ok["spec"])
            print(f"{shown}: ok ({ok['name']}: {ok['image_name']})")
    if error is not None:
        raise error
    return 0


def _preflight(args: argparse.Namespace, specs: list[BuildSpec],
               typed: dict[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each build that passed, as a dict (its line printed unless --json), and every
    problem of the others."""
    from osbuild.images.refresh import RefreshMode
    from osbuild.pipeline import BuildOptions
    from osbuild.unattended.jobs import default_log_dir, preflight_only
    from osbuild.unattended.state import default_state_dir

    state_dir = default_state_dir().resolve()
    build_options = BuildOptions(log_dir=default_log_dir(state_dir), state_dir=state_dir,
                                 lock_family=True)  # as `osbuild build`: it claims the family
    jobs, identities, found = preflight_only(
        specs=specs, clouds=args.os_cloud, options=build_options, parallel=args.parallel,
        region_name=args.os_region_name, cloud_settings=options.pace_override(args),
        refresh=RefreshMode(args.refresh))
    checked: list[dict[str, Any]] = []
    for job, own, choice in zip(jobs, found.of_job, found.choices, strict=True):
        if own or choice is None:
            continue
        parent = choice.parent
        checked.append({"spec": str(job.spec.source_path), "name": job.spec.name,
                        "image_name": job.spec.windows.image_name,
                        "cloud": identities[job.cloud], "kind": choice.kind,
                        "parent_image_id": parent.image_id if parent else None,
                        "reason": choice.reason})
        if not args.json:
            kind, reason = "a full build", choice.reason
            if parent is not None:
                kind = f"a refresh of {parent.name} ({parent.image_id})"
                # The reason names the parent too ("NAME (ID) has the same inputs..."): once.
                reason = reason.replace(f"{parent.name} ({parent.image_id}) ", "it ", 1)
            shown = typed.get(str(job.spec.source_path), str(job.spec.source_path))
            print(f"{shown}: ok in {identities[job.cloud]} ({job.spec.name}: "
                  f"{kind}; {reason})")
    return checked, list(found.problems)
