"""`osbuild schema`: print the build spec's JSON Schema (for editors and CI linters)."""

from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from osbuild.spec import json_schema  # pydantic: not for --help

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0
