"""`osbuild schema`: print the build spec's JSON Schema (for editors and CI linters)."""

from __future__ import annotations

import argparse
import json

from osbuild.spec import json_schema


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0
