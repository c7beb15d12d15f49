"""`osbuild images`: list a family, prune it per policy, promote an image, roll back.

The arguments live here and load nothing heavy, so `osbuild images --help` answers at once;
each action's work is in :mod:`osbuild.cli.image_actions`, imported when it runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from osbuild.cli import options

ACTIONS = ("list", "prune", "promote", "rollback", "verify")
# The options of `osbuild images` that take a value (so their value is not an action).
_VALUE_OPTIONS = {"--family", "--os-cloud", "--os-region-name", "--keep", "--max-age",
                  "--superseded", "--state-dir", "--time-scale"}


def register(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "List a family's images, prune them per policy, make an image current, roll back,\n"
        "or run a kept image's boot test again. Without an action: list (osbuild images\n"
        "SPEC). IMAGE is an ID or a name; a name several images share is refused with the\n"
        "list. Every action takes --os-cloud, --os-region-name, --json and --time-scale\n"
        "(for the simulated cloud only); osbuild images ACTION --help tells more.")
    actions = parser.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list a family's images (the default action)",
                                 description="Versions, status, verify result, current, "
                                 "hidden, age, servers using each image.")
    _add_family(listing)
    _add_common(listing, json_help="print JSON")
    listing.set_defaults(handler=_action("run_list"))

    prune = actions.add_parser("prune", help="hide and delete per the retention policy",
                               description="Apply the policy: the spec's, or with --family "
                               "the defaults (keep 3, hide), overridable.")
    _add_family(prune)
    prune.add_argument("--dry-run", action="store_true",
                       help="only say what would be hidden or deleted")
    prune.add_argument("--keep", type=int, metavar="N",
                       help="keep the newest N (default: the spec's image.keep, or 3)")
    prune.add_argument("--max-age", metavar="DURATION",
                       help="delete images older than this (e.g. 90d)")
    prune.add_argument("--superseded", choices=("hide", "delete"),
                       help="what happens to images older than the current one")
    _add_common(prune, json_help="print the decisions as JSON")
    prune.set_defaults(handler=_action("run_prune"))

    promote = actions.add_parser(
        "promote", help="make a verified image current",
        description="Make IMAGE (verified) its family's current image. An image still under "
        "its capture name (its build stopped after verify) first gets the spec's final name, "
        "visibility, tags and members.")
    promote.add_argument("image", metavar="IMAGE", help="image ID or name")
    promote.add_argument("spec", nargs="?", metavar="SPEC",
                         help="the family's spec, for an image still under its capture name "
                              "(default: found from the build's state)")
    options.add_state_dir(promote)
    _add_common(promote, json_help="print the image as JSON")
    promote.set_defaults(handler=_action("run_promote"))

    rollback = actions.add_parser("rollback", help="make the previous verified image current")
    _add_family(rollback)
    _add_common(rollback, json_help="print the image as JSON")
    rollback.set_defaults(handler=_action("run_rollback"))

    verify = actions.add_parser(
        "verify", help="run the boot test of a kept image again",
        description="Run the build's verify step alone on IMAGE under a new build id and "
        "record osbuild_verify; the image is never deleted.")
    verify.add_argument("image", metavar="IMAGE", help="image ID or name")
    verify.add_argument("spec", nargs="?", metavar="SPEC",
                        help="the family's spec (default: found from the build's state)")
    options.add_state_dir(verify)
    _add_common(verify, json_help=None)
    verify.set_defaults(handler=_action("run_verify"))

    # `osbuild images --help` shows every action's synopsis, each declared once above.
    parser.epilog = "actions:\n" + "".join(
        "  " + sub.format_usage().removeprefix("usage: ")
        for sub in (listing, prune, promote, rollback, verify))


def _add_family(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", metavar="SPEC", help="the family's spec file")
    parser.add_argument("--family", metavar="NAME", help="the image family (spec `name`)")


def _add_common(parser: argparse.ArgumentParser, *, json_help: str | None) -> None:
    options.add_cloud(parser)
    if json_help is None:
        options.add_json(parser)
    else:
        parser.add_argument("--json", action="store_true", help=json_help)
    options.add_time_scale(parser)


def normalize(argv: list[str]) -> list[str]:
    """Today's spellings: no action means list, and options may come before the action."""
    if argv[:1] and argv[0] in ("-h", "--help", *ACTIONS):
        return argv
    after_option = False
    for index, word in enumerate(argv):
        if word in ACTIONS and not after_option:
            return [word, *argv[:index], *argv[index + 1:]]
        after_option = word in _VALUE_OPTIONS
    return ["list", *argv]


def _action(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler ``name`` of :mod:`osbuild.cli.image_actions`, imported when called."""
    def run(args: argparse.Namespace) -> int:
        handler: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module("osbuild.cli.image_actions"), name)
        return handler(args)
    return run
