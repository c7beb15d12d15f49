"""`osbuild validate SPEC...`: check specs without touching any cloud."""

from __future__ import annotations

import argparse

from osbuild.errors import SpecError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """An ok line for every valid spec, then every problem of the others (exit 2)."""
    from osbuild.spec import load_spec  # pydantic: not for --help

    problems: list[str] = []
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            problems.extend(exc.lines())
            continue
        print(f"{spec.source_path}: ok ({spec.name}: {spec.windows.image_name})")
    if problems:
        raise SpecError(problems)
    return 0
