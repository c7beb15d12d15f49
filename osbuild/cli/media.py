"""`osbuild media ...`: inspect installation media and prepare it for prompt-less UEFI boot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from osbuild.cli import options
from osbuild.errors import InvalidInput
from osbuild.media import eltorito, wim
from osbuild.media.virtio_iso import read_virtio_iso


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="media_command", metavar="ACTION", required=True)

    prepare = commands.add_parser(
        "prepare-uefi",
        help="switch a Windows ISO's EFI boot entry to efisys_noprompt.bin",
        description="Rewrite the El Torito EFI entry of a Windows ISO so that a UEFI install "
        "starts without a key press. Local: IN.iso OUT.iso. Cloud: --image NAME downloads "
        "the Glance image, rewrites it and uploads <name>-noprompt with property "
        "osbuild_uefi_noprompt=true.",
    )
    prepare.add_argument("paths", nargs="*", metavar="ISO", help="IN.iso OUT.iso (local mode)")
    prepare.add_argument("--image", metavar="NAME", help="Glance image name or ID (cloud mode)")
    options.add_cloud(prepare, default_help="$OS_CLOUD or OS_* variables; cloud mode")
    prepare.add_argument("--name", metavar="NEW", help="name of the uploaded image "
                         "(default: the source name with -noprompt before .iso)")
    prepare.add_argument("--work-dir", type=Path, metavar="DIR",
                         help="where the temporary copy goes (cloud mode; default: TMPDIR)")
    prepare.add_argument("--force", action="store_true",
                         help="overwrite OUT.iso / upload even if a prepared image exists")
    prepare.set_defaults(handler=run_prepare)

    inspect = commands.add_parser("inspect", help="show an ISO's boot entries and editions")
    inspect.add_argument("path", type=Path, metavar="ISO")
    inspect.set_defaults(handler=run_inspect)


class _Progress:
    """One status line on a terminal; quarter steps otherwise (logs stay short)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if total < 64 * 1024 * 1024:
            return  # over in a blink; a progress line would only be noise
        percent = min(100, done * 100 // total)
        step = percent if self.tty else percent // 25 * 25
        if self.last.get(phase) == step:
            return
        self.last[phase] = step
        text = f"{phase:<8} {percent:3d}% ({done / 1e9:.2f}/{total / 1e9:.2f} GB)"
        if self.tty:
            end = "\n" if percent == 100 else ""
            print("\r" + text, end=end, file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


def run_prepare(args: argparse.Namespace) -> int:
    if args.image:
        if args.paths:
            raise InvalidInput(["prepare-uefi: give either --image NAME or IN.iso OUT.iso"])
        return _prepare_in_cloud(args)
    if len(args.paths) != 2:
        raise InvalidInput(["prepare-uefi: expected IN.iso OUT.iso (or --image NAME)"])
    if args.os_cloud or args.name or args.work_dir:
        raise InvalidInput(["prepare-uefi: --os-cloud, --name and --work-dir need --image"])
    src, dst = Path(args.paths[0]), Path(args.paths[1])
    if dst.exists() and not args.force:
        raise InvalidInput([f"{dst}: already exists (use --force to overwrite)"])
    progress = _Progress()
    result = eltorito.prepare_uefi(
        src, dst, progress=lambda done, total: progress("copy", done, total)
    )
    _print_entries(result.after)
    if not result.changed:
        print(f"{src}: the EFI entry already loads {eltorito.EFI_NOPROMPT_IMAGE}; copied as is")
    print(f"wrote {dst}")
    return 0


def _prepare_in_cloud(args: argparse.Namespace) -> int:
    from osbuild.cloud.connect import check_auth, connect
    from osbuild.media.uefi_image import prepare_uefi_image

    if args.work_dir is not None and not args.work_dir.is_dir():
        # Checked before the cloud is touched: the ISO is downloaded into this folder.
        raise InvalidInput([f"--work-dir {args.work_dir}: not an existing folder"])
    conn = connect(args.os_cloud, region_name=args.os_region_name)
    check_auth(conn, args.os_cloud, services=("image",))
    result = prepare_uefi_image(
        conn, args.image, new_name=args.name, work_dir=args.work_dir, force=args.force,
        progress=_Progress(),
    )
    if result.created:
        print(f"uploaded {result.image_name} ({result.image_id}) from {result.source_name}")
    else:
        print(f"{result.image_name} ({result.image_id}) is already prepared; nothing to do")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    path: Path = args.path
    try:
        _print_entries(eltorito.read_boot_entries(path))
    except InvalidInput as exc:
        if "El Torito" not in str(exc):
            raise
        print("no El Torito boot catalog (not bootable media)")  # virtio-win is not
    with path.open("rb") as fp:
        # Only the WIM header and its XML metadata are read, not gigabytes of image data.
        try:
            editions = wim.iso_images(fp, name=str(path))
        except wim.NotWindowsMedia:
            editions = None
    for image in editions or []:
        # Evaluation media take no product key (windows.product_key omitted); others do.
        evaluation = "evaluation" if image.evaluation else ""
        facts = [fact for fact in (image.version, image.arch, "/".join(image.languages),
                                   image.edition_id, evaluation) if fact]
        print(f"image {image.index}: {image.name}" + (f" ({', '.join(facts)})" if facts else ""))
    with path.open("rb") as fp:
        drivers = read_virtio_iso(fp, name=str(path))
    if drivers is not None:
        for driver, folders in drivers.drivers.items():
            print(f"driver {driver}: {' '.join(folders)}")
        print(f"guest tools: {'yes' if drivers.guest_tools else 'no'}; "
              f"QEMU guest agent: {'yes' if drivers.qemu_ga else 'no'}")
    if editions is None and drivers is None:
        print("no readable sources/install.wim (or install.esd) and no virtio-win driver "
              "folders")
    return 0


def _print_entries(entries: list[eltorito.BootEntry] | tuple[eltorito.BootEntry, ...]) -> None:
    for entry in entries:
        state = "bootable" if entry.bootable else "not bootable"
        print(f"{entry.platform:<5} {entry.path or f'(sector {entry.load_rba})'} ({state}, "
              f"{entry.sector_count} sectors)")
