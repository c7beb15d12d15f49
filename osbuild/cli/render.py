"""`osbuild render SPEC -o DIR`: write the guest media (tree and config ISO) without a cloud."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuild import naming
from osbuild.errors import InvalidInput


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="DIR",
        help="where to write the tree (DIR/config) and DIR/config.iso",
    )
    parser.add_argument(
        "--build-id", default=None, metavar="ID", help="build id to embed (default: a new one)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from osbuild.media.render import render_media  # pydantic and jinja2: not for --help
    from osbuild.spec import load_spec

    spec = load_spec(args.spec)
    if args.output.exists() and not args.output.is_dir():
        raise InvalidInput([f"-o {args.output}: not a directory"])
    build_id = args.build_id or naming.new_build_id()
    # The per-build password is generated inside render_media and never shown.
    try:
        media = render_media(spec, args.output, build_id=build_id)
    except OSError as exc:
        where = exc.filename or args.output
        raise InvalidInput([f"-o {args.output}: cannot write {where}: "
                            f"{exc.strerror or exc}"]) from None
    print(f"build id: {build_id}")
    print(f"tree:     {media.root}")
    print(f"iso:      {media.iso_path} ({media.size} bytes, sha256 {media.sha256})")
    print(f"nonce:    {media.nonce}")
    print(f"stages:   {', '.join(media.plan.stages)}")
    return 0
