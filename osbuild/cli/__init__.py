"""The thin command line: parses arguments, calls the library, renders results and errors.

Each sub-command is a module with ``register(parser)``, which adds its arguments and sets
``handler`` to a function ``(args) -> int``; it may define ``normalize(argv)`` to rewrite
older spellings of its arguments. Only the named sub-command's module is imported (the
others pull in openstacksdk), so ``osbuild --help`` stays fast. Only :func:`main` turns
exceptions into messages and exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from osbuild import __version__
from osbuild.errors import (
    EXIT_BUILD_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    OsbuildError,
)

# Sub-command modules and their one-line help, in the order `osbuild --help` lists them.
COMMANDS = {
    "build": "build images from specs",
    "resume": "finish a build whose orchestrator died",
    "demo": "build the Server 2022 example in the embedded simulated cloud",
    "validate": "check build specs; --preflight: against the cloud too (exit 0 valid, 2 invalid)",
    "render": "render a spec's answer file, scripts and config ISO locally",
    "schema": "print the JSON Schema of the build spec",
    "media": "inspect and prepare Windows install media",
    "sim": "run the simulated OpenStack cloud",
    "gc": "delete resources left behind by dead builds",
    "images": "list, prune, promote and roll back image families",
    "report": "write a build's HTML report",
    "status": "show each image family's state in each cloud",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the sub-command it names gets its full arguments."""
    parser = _Parser(
        prog="osbuild",
        description="Build Windows cloud images from vendor install media inside OpenStack.",
    )
    parser.add_argument("--version", action="version", version=f"osbuild {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logging"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None if argv is None else _command(argv)
    for name, summary in COMMANDS.items():
        command = subparsers.add_parser(name, help=summary)
        if argv is None or name == wanted:
            importlib.import_module(f"osbuild.cli.{name}").register(command)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command argv names: its first word that is no option (none take values)."""
    return next((word for word in argv if not word.startswith("-")), None)


# The options that take a DURATION. argparse reads a value like "-1h" after them as an
# option of its own ("unrecognized arguments: -1h"), so it never reached the duration check
# and its clear message.
DURATION_OPTIONS = frozenset({"--wait-lock", "--older-than", "--max-age"})
_NEGATIVE = re.compile(r"-\d")


def attach_negative_durations(argv: list[str]) -> list[str]:
    """``--wait-lock -1h`` as ``--wait-lock=-1h``: the value reaches its type check."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            return [*out, word, *words]
        if word in DURATION_OPTIONS:
            value = next(words, None)
            if value is not None and _NEGATIVE.match(value):
                out.append(f"{word}={value}")
                continue
            out.append(word)
            if value is not None:
                out.append(value)
            continue
        out.append(word)
    return out


def _normalized(argv: Sequence[str]) -> list[str]:
    """argv with the named sub-command's older spellings rewritten (``images SPEC``)."""
    argv = attach_negative_durations(list(argv))
    name = _command(argv)
    if name not in COMMANDS:
        return argv
    normalize = getattr(importlib.import_module(f"osbuild.cli.{name}"), "normalize", None)
    if normalize is None:
        return argv
    at = argv.index(name) + 1
    return [*argv[:at], *normalize(argv[at:])]


class _Parser(argparse.ArgumentParser):
    """argparse's parser, remembering its usage error for the `error` event of --json."""

    usage_error: str | None = None
    usage_command = ""

    def error(self, message: str) -> NoReturn:
        _Parser.usage_error = f"{self.prog}: {message}"
        # A sub-command's parser is "osbuild images rollback": the command is the rest.
        _Parser.usage_command = self.prog.partition(" ")[2]
        super().error(message)


def _json_requested(argv: Sequence[str]) -> bool:
    """Whether argv asks for --json (as an option: not after ``--``)."""
    words = list(argv)
    return "--json" in (words[: words.index("--")] if "--" in words else words)


def _usage_command(argv: Sequence[str]) -> str:
    """The command a usage error belongs to: the sub-command and, for `images`, `media` and
    `sim`, its action (as the `error` event of a later failure names them)."""
    words = [word for word in argv if not word.startswith("-")]
    if words and words[0] in COMMANDS:
        return " ".join(words[:2]) if words[0] in ("images", "media", "sim") else words[0]
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    _Parser.usage_error = None
    try:
        argv = _normalized(sys.argv[1:] if argv is None else argv)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        if _Parser.usage_error is not None and _json_requested(argv or ()):
            # A log pipeline reading stdout learns why cron's run did nothing, as from any
            # other error (stderr has argparse's usage and message).
            from osbuild.cli import jsonout

            jsonout.forget()
            # The top parser reports unrecognized arguments for every sub-command.
            named = _command(argv or ())
            command = _Parser.usage_command or (named if named in COMMANDS else "")
            jsonout.print_error(command, [_Parser.usage_error], EXIT_INVALID_INPUT)
        return int(exc.code or 0)
    except KeyboardInterrupt:
        # Ctrl-C while the sub-command's modules load: still 130, as cron scripts expect
        # (uncaught, Python would die by SIGINT: -2 to a parent process).
        print("osbuild: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        from osbuild import redact  # after parsing: --help stays fast
        from osbuild.cli import jsonout

        jsonout.forget()
        _configure_logging(debug=args.debug)
        return int(args.handler(args))
    except OsbuildError as exc:
        # An auth error may quote a credential, a failure reason what a guest printed.
        redact.PROCESS.exception(exc)
        if args.debug:
            import traceback

            traceback.print_exc()
        for line in exc.lines():
            print(f"osbuild: error: {line}", file=sys.stderr)
        _json_error(args, exc.lines(), exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        print("osbuild: interrupted", file=sys.stderr)
        _json_error(args, ["interrupted"], EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_BUILD_FAILED
    except Exception as exc:
        # A cloud failure that no command turned into an OsbuildError (the retry policy has
        # already given up on it): one line, not a traceback.
        redact.PROCESS.exception(exc)
        if not type(exc).__module__.startswith(("openstack", "keystoneauth1")) or args.debug:
            raise
        print(f"osbuild: error: cloud: {_one_line(exc)}", file=sys.stderr)
        _json_error(args, [f"cloud: {_one_line(exc)}"], EXIT_BUILD_FAILED)
        return EXIT_BUILD_FAILED


def _json_error(args: argparse.Namespace, lines: Sequence[str], exit_code: int) -> None:
    """With --json, the error as an `error` event on stdout too, unless the command already
    wrote JSON there (a build's `build.failed`, gc's result with its leftovers)."""
    from osbuild.cli import jsonout

    if getattr(args, "json", False) and not jsonout.written():
        command = " ".join(part for part in (args.command, getattr(args, "images_command", None))
                           if part)
        jsonout.print_error(command, lines, exit_code)


def _configure_logging(*, debug: bool) -> None:
    from osbuild import redact

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    redact.redact_logs(logging.getLogger())
    if not debug:
        # keystoneauth and openstacksdk log request details at INFO/DEBUG; keep them quiet.
        for noisy in ("keystoneauth", "openstack", "stevedore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _one_line(exc: BaseException) -> str:
    from osbuild import redact

    return redact.PROCESS.text(" ".join(str(exc).split())) or type(exc).__name__


__all__ = ["EXIT_INVALID_INPUT", "main"]
