"""`osbuild sim serve`: run the simulated OpenStack cloud until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from osbuild.errors import InvalidInput


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve", help="serve the simulated cloud over HTTP on 127.0.0.1 until interrupted"
    )
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument("--clouds-yaml", required=True, metavar="PATH",
                       help="write a clouds.yaml with the clouds 'osbuild-sim' (a project "
                       "member, as osbuild runs) and 'osbuild-sim-admin' (the cloud's admin, "
                       "for the openstack client) here (mode 0600)")
    serve.add_argument("--speed", type=float,
                       default=float(os.environ.get("OSBUILD_SIM_SPEED", "600")),
                       help="simulated seconds per real second (default 600)")
    serve.add_argument("--faults", metavar="FILE", default=os.environ.get("OSBUILD_SIM_FAULTS"),
                       help="faults file (YAML), see etc/sim-faults.example.yaml")
    serve.add_argument("--application-credential", action="store_true",
                       help="give 'osbuild-sim' an application credential instead of a "
                       "password")
    serve.add_argument("--msi", metavar="PATH", default=None,
                       help="write a stand-in cloudbase-init MSI here (unless a file is "
                       "there already), e.g. etc/builds/CloudbaseInitSetup_x64.msi beside "
                       "the example specs: on the simulated cloud any file serves as the MSI")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from osbuild_sim import SimCloud

    if args.speed <= 0:
        raise InvalidInput(["--speed must be positive"])
    if not 0 <= args.port <= 65535:
        raise InvalidInput(["--port must be between 0 and 65535"])
    folder = Path(args.clouds_yaml).parent
    if not folder.is_dir():
        raise InvalidInput([f"--clouds-yaml {args.clouds_yaml}: folder {folder} does not exist"])
    if args.msi is not None:
        _seed_msi(Path(args.msi))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sim = SimCloud(speed=args.speed, faults=args.faults, port=args.port).start()
        except OSError as exc:
            raise InvalidInput([f"cannot serve on port {args.port}: {exc}"]) from exc
        try:
            sim.write_clouds_yaml(args.clouds_yaml,
                                  application_credential=args.application_credential)
            print(f"ready {sim.auth_url}", flush=True)
            print(_msi_note(args.msi), flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            sim.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _seed_msi(path: Path) -> None:
    from osbuild_sim.media import cloudbase_msi_standin

    if path.is_file():
        return
    if not path.parent.is_dir():
        raise InvalidInput([f"--msi: no folder {path.parent}"])
    try:
        path.write_bytes(cloudbase_msi_standin())
    except OSError as exc:
        raise InvalidInput([f"--msi: cannot write {path}: {exc.strerror}"]) from None


def _msi_note(msi: str | None) -> str:
    if msi is not None:
        return (f"cloudbase-init MSI for the example specs: {msi} (a stand-in: on the "
                "simulated cloud any file serves as the MSI)")
    return ("on the simulated cloud any file serves as the cloudbase-init MSI: put one beside "
            "your spec (cloudbase_init.msi), or start with --msi PATH to have one written")
