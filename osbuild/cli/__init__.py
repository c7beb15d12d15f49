"""The thin command line: parses arguments, calls the library, renders results and errors.

Each sub-command is a module with ``register(subparsers)``, which adds its parser and sets
``handler`` to a function ``(args) -> int``. Only :func:`main` turns exceptions into
messages and exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from osbuild import __version__
from osbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    OsbuildError,
)

# Sub-command modules, in the order `osbuild --help` lists them.
COMMANDS = ("build", "resume", "demo", "validate", "render", "schema", "media", "sim", "gc",
            "images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="osbuild",
        description="Build Windows cloud images from vendor install media inside OpenStack.",
    )
    parser.add_argument("--version", action="version", version=f"osbuild {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logging"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in COMMANDS:
        try:
            module = importlib.import_module(f"osbuild.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"osbuild.cli.{name}":
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


class _UsageExit(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.debug:
        # keystoneauth and openstacksdk log request details at INFO/DEBUG; keep them quiet.
        for noisy in ("keystoneauth", "openstack", "stevedore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.handler(args))
    except OsbuildError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        for line in exc.lines():
            print(f"osbuild: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("osbuild: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_BUILD_FAILED
    except Exception as exc:
        # A cloud failure that no command turned into an OsbuildError (the retry policy has
        # already given up on it): one line, not a traceback.
        if not type(exc).__module__.startswith(("openstack", "keystoneauth1")) or args.debug:
            raise
        print(f"osbuild: error: cloud: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BUILD_FAILED


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["EXIT_INVALID_INPUT", "main"]
