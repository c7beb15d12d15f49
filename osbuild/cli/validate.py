"""`osbuild validate SPEC...`: check specs without touching any cloud."""

from __future__ import annotations

import argparse

from osbuild.spec import load_specs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="check build specs (exit 0 valid, 2 invalid)"
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    specs = load_specs(args.specs)
    for spec in specs:
        print(f"{spec.source_path}: ok ({spec.name}: {spec.windows.image_name})")
    return 0
