"""`python -m tests.support.realservices up|check`: real Keystone and Glance for developers.

``up`` serves them until Ctrl-C or SIGTERM and writes a clouds.yaml (cloud ``osbuild-real``;
with ``--with-sim``, cloud ``osbuild-attached``: a project user's view of real Keystone and
Glance plus the simulated compute, block storage and network, ready for ``osbuild build``);
``check`` starts them, runs a smoke test (token, project and user, application credential,
an ISO through Glance's format inspection), tears them down and prints the timings as JSON.
``--with-cinder`` adds real Cinder (:mod:`tests.support.realcinder`); ``check`` then also
makes a volume from the ISO and prints Cinder's start time and memory. ``--with-nova`` adds
the whole real stack (:class:`tests.support.realstack.RealStack`: Cinder, Nova with the
guest-playing virt driver, the network, the seeded media and flavors); ``up`` then writes a
project user's cloud ``osbuild-real`` and the admin's ``osbuild-real-admin``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.realcinder import RealCinder
from tests.support.realservices import RealServices, RealServicesError
from tests.support.realstack import REAL_CLOUD, REAL_GUEST_SPEED, REAL_TIME_SCALE, RealStack

ADMIN_CLOUD = REAL_CLOUD + "-admin"


@contextlib.contextmanager
def _workdir(path: str | None, keep: bool) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    tmp = Path(tempfile.mkdtemp(prefix="osbuild-real-"))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def smoke_check(rs: RealServices) -> dict[str, float]:
    """Token, project/user, app credential and an ISO round trip through Glance; timings."""
    import pycdlib

    timings: dict[str, float] = {}
    began = time.monotonic()
    who = rs.create_project_user("smoke", "smoke-user")
    cred = rs.create_application_credential(who, "smoke-cred")
    conn = rs.connect(cred.auth(rs.auth_url))
    conn.authorize()
    timings["identity"] = time.monotonic() - began

    began = time.monotonic()
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3)
    payload = b"osbuild smoke\n"

    iso.add_fp(io.BytesIO(payload), len(payload), "/SMOKE.TXT;1", joliet_path="/smoke.txt")
    buf = io.BytesIO()
    iso.write_fp(buf)
    iso.close()
    image = conn.image.create_image(
        name="osbuild-smoke",
        data=buf.getvalue(),
        disk_format="iso",
        container_format="bare",
        allow_duplicates=True,
    )
    image = conn.image.wait_for_status(image, "active", failures=["killed"], wait=60)
    conn.image.delete_image(image)
    timings["glance_iso_roundtrip"] = time.monotonic() - began
    return timings


def cinder_check(rs: RealServices, cinder: RealCinder) -> dict[str, float]:
    """A volume from a Glance ISO, its backing file checked, deleted; timings."""
    began = time.monotonic()
    who = rs.create_project_user("smoke-volumes", "smoke-volume-user")
    conn = rs.connect(who.auth(rs.auth_url))
    data = _smoke_iso()
    image = conn.image.create_image(
        name="osbuild-smoke-volume",
        data=data,
        disk_format="iso",
        container_format="bare",
        allow_duplicates=True,
    )
    image = conn.image.wait_for_status(image, "active", failures=["killed"], wait=60)
    volume = conn.block_storage.create_volume(size=1, image_id=image.id, name="smoke")
    volume = conn.block_storage.wait_for_status(
        volume, "available", failures=["error"], interval=0.5, wait=120
    )
    with cinder.volume_path(volume.id).open("rb") as fh:
        if fh.read(len(data)) != data:
            raise RealServicesError("the volume made from the ISO does not hold its bytes")
    conn.block_storage.delete_volume(volume)
    conn.block_storage.wait_for_delete(volume, interval=0.5, wait=120)
    conn.image.delete_image(image)
    return {"volume_from_iso_roundtrip": time.monotonic() - began}


def _smoke_iso() -> bytes:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3)
    payload = b"osbuild smoke\n"
    iso.add_fp(io.BytesIO(payload), len(payload), "/SMOKE.TXT;1", joliet_path="/smoke.txt")
    buf = io.BytesIO()
    iso.write_fp(buf)
    iso.close()
    return buf.getvalue()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_stack(rs: RealServices, workdir: Path, args: argparse.Namespace,
                 stack: contextlib.ExitStack) -> int:
    """``--with-nova``: the whole real stack; ``check`` prints its timings and memory, ``up``
    writes the two clouds and serves until Ctrl-C."""
    real = stack.enter_context(RealStack(rs, workdir / "stack", speed=args.guest_speed))
    assert real.nova is not None
    print(f"cinder {real.cinder.url}, nova {real.nova.compute_url} "
          f"(stack {real.timings['stack']:.1f}s), logs {real.workdir}", flush=True)
    if args.action == "check":
        print(json.dumps({"startup": {**rs.timings, **real.timings},
                          "memory_mb": real.memory()}))
        return 0
    if args.msi:
        _seed_msi(Path(args.msi))
    who = rs.create_project_user("images", "image-builder")
    path = Path(args.clouds_yaml)
    rs.write_clouds_yaml(path, REAL_CLOUD, who.auth(rs.auth_url),
                         more={ADMIN_CLOUD: rs.admin_auth})
    print(f"clouds: {REAL_CLOUD} (project {who.project_name}, user {who.user_name}), "
          f"{ADMIN_CLOUD} (admin: every project's servers, volumes, images); "
          f"guest speed {args.guest_speed:g}", flush=True)
    print(f"  OS_CLIENT_CONFIG_FILE={path} osbuild build etc/builds/ws2022-standard.yaml "
          f"--os-cloud {REAL_CLOUD} --time-scale {REAL_TIME_SCALE:g}", flush=True)
    _serve(f"ready: OS_CLIENT_CONFIG_FILE={path} OS_CLOUD={REAL_CLOUD}")
    return 0


def _seed_msi(path: Path) -> None:
    from osbuild_sim.media import cloudbase_msi_standin

    if not path.exists():
        path.write_bytes(cloudbase_msi_standin())
    print(f"cloudbase-init MSI for the example specs: {path} (the guest takes any file)",
          flush=True)


def _serve(ready_line: str) -> None:
    print(ready_line, flush=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.realservices",
        description="Run real Keystone and Glance on loopback for osbuild's functional tier.",
    )
    parser.add_argument("action", choices=("up", "check"))
    parser.add_argument("--workdir", help="directory for databases, keys, store and logs")
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    parser.add_argument(
        "--clouds-yaml", default="clouds.yaml", help="where `up` writes clouds.yaml"
    )
    parser.add_argument(
        "--with-sim",
        action="store_true",
        help="`up` also runs the simulated compute/volume/network attached to them, and "
        "writes a project user's cloud `osbuild-attached` for `osbuild build`",
    )
    parser.add_argument(
        "--with-cinder",
        action="store_true",
        help="also run real Cinder (API, scheduler, file-backed volumes) in its own process",
    )
    parser.add_argument(
        "--with-nova",
        action="store_true",
        help="also run real Nova (the simulated Windows guest as its virt driver), real "
        "Cinder and the network, seeded with the example specs' media and flavors; `up` "
        f"writes a project user's cloud `{REAL_CLOUD}` and the admin's `{ADMIN_CLOUD}`",
    )
    parser.add_argument(
        "--msi",
        metavar="PATH",
        help="with --with-nova: write a stand-in cloudbase-init MSI there unless a file is "
        "there already (as `osbuild sim serve --msi`), e.g. "
        "etc/builds/CloudbaseInitSetup_x64.msi for the example specs",
    )
    parser.add_argument(
        "--guest-speed",
        type=float,
        default=REAL_GUEST_SPEED,
        help="with --with-nova: simulated guest seconds per real second "
        f"(default {REAL_GUEST_SPEED:g})",
    )
    args = parser.parse_args(argv)
    if (args.with_cinder or args.with_nova) and args.with_sim:
        parser.error("--with-sim and real Cinder/Nova both provide block-storage; choose one")
    if args.guest_speed <= 0:
        parser.error("--guest-speed must be positive")
    try:
        with _workdir(args.workdir, args.keep or args.action == "up") as workdir:
            rs = RealServices(workdir)
            with rs:
                print(
                    f"keystone {rs.auth_url} ({rs.timings['keystone']:.1f}s), "
                    f"glance {rs.glance_url} ({rs.timings['glance']:.1f}s), logs {rs.logs_dir}",
                    flush=True,
                )
                with contextlib.ExitStack() as stack:
                    cinder = None
                    if args.with_nova:
                        return _serve_stack(rs, workdir, args, stack)
                    if args.with_cinder:
                        cinder = stack.enter_context(RealCinder(rs))
                        print(
                            f"cinder {cinder.url} ({cinder.timings['startup']:.1f}s), "
                            f"volumes {cinder.volumes_dir}",
                            flush=True,
                        )
                    if args.action == "check":
                        report: dict[str, object] = {
                            "startup": rs.timings,
                            "check": smoke_check(rs),
                        }
                        if cinder is not None:
                            report["cinder"] = {
                                "startup": cinder.timings,
                                "check": cinder_check(rs, cinder),
                                "memory_kb": cinder.rss_kb(),
                            }
                        print(json.dumps(report))
                        return 0
                    path = Path(args.clouds_yaml)
                    cloud = "osbuild-real"
                    if args.with_sim:
                        from tests.support.attached import ATTACHED_CLOUD, AttachedSim

                        stack.enter_context(AttachedSim(rs))
                        who = rs.create_project_user("images", "image-builder")
                        cloud = ATTACHED_CLOUD
                        rs.write_clouds_yaml(path, cloud, who.auth(rs.auth_url))
                    else:
                        rs.write_clouds_yaml(path)
                    _serve(f"ready: OS_CLIENT_CONFIG_FILE={path} OS_CLOUD={cloud}")
                return 0
    except RealServicesError as exc:
        print(f"realservices: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
