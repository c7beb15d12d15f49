"""Running osbuild builds against the real stack (:mod:`tests.support.realstack`): specs,
the CLI in-process, and the check that nothing is left in any project afterwards.

Shared by the functional tier's build tests (their fixtures are in tests/functional/conftest.py:
``builder``, the module's own project user, and ``baseline``, which every test of a build module
uses and which calls :func:`remember_baseline`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from osbuild.cli import main
from osbuild.resources import examples_dir
from osbuild_sim.guest import read_disk_record
from osbuild_sim.media import cloudbase_msi_standin
from tests.support.cliprocess import Event, interrupt_when
from tests.support.qcow2 import is_qcow2
from tests.support.realservices import ProjectUser
from tests.support.realstack import REAL_CLOUD, REAL_TIME_SCALE, RealStack

BASELINE: set[str] = set()  # ids that existed before the running test (fixture ``baseline``)


def remember_baseline(stack: RealStack) -> frozenset[str]:
    """What exists before the test (other modules' tests share Keystone and Glance); a
    test's ``baseline`` fixture calls it, and :func:`finish` ignores those ids."""
    ids = stack.resource_ids()
    BASELINE.clear()
    BASELINE.update(ids)
    return ids


def write_spec(workdir: Path, example: str, **changes: dict[str, Any]) -> Path:
    """An example spec with sections updated (``verify={"enabled": False}``)."""
    data = yaml.safe_load((examples_dir() / example).read_text())
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = workdir / example
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    msi = workdir / "CloudbaseInitSetup_x64.msi"
    if not msi.exists():
        msi.write_bytes(cloudbase_msi_standin())
    return path


def run_build(
    workdir: Path, capsys: Any, spec: Path, *extra: str
) -> tuple[int, list[dict[str, Any]], str, float]:
    capsys.readouterr()
    began = time.monotonic()
    code = main(["build", str(spec), "--os-cloud", REAL_CLOUD,
                 "--time-scale", str(REAL_TIME_SCALE),
                 "--log-dir", str(workdir / "logs"), "--json", *extra])  # fmt: skip
    took = time.monotonic() - began
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, events, err, took


def assert_published(conn: Any, events: list[dict[str, Any]]) -> str:
    done = [e for e in events if e["event"] == "build.succeeded"][-1]
    image = conn.image.get_image(done["image_id"])
    assert image.status == "active"
    raw = dict(conn.image.get(f"/images/{image.id}").json())
    assert raw["osbuild_build_id"] == done["build_id"]
    assert raw["os_type"] == "windows"
    record = read_disk_record(image_head(conn, image.id, raw["disk_format"]))
    assert record is not None and record["build_id"] == done["build_id"], record
    assert record.get("sysprep"), record
    return str(image.id)


def image_head(conn: Any, image_id: str, disk_format: str) -> bytes:
    """The first MiB of the image's disk, without holding a 40 GB raw image in memory."""
    response = conn.image.download_image(image_id, stream=True)
    try:
        if disk_format == "qcow2":  # small: qemu-img wrote only the used clusters
            data = b"".join(response.iter_content(1 << 20))
            assert is_qcow2(data)
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "image.qcow2").write_bytes(data)
                # qemu-img, not qcow2_to_raw: the virtual disk is 40-80 GB, sparse on disk.
                subprocess.run(["qemu-img", "convert", "-O", "raw", f"{tmp}/image.qcow2",
                                f"{tmp}/image.raw"], check=True)
                with open(f"{tmp}/image.raw", "rb") as fh:
                    return fh.read(1 << 20).rstrip(b"\x00")
        head = b""
        for chunk in response.iter_content(1 << 16):
            head += chunk
            if len(head) >= 1 << 20:
                break
        return head.rstrip(b"\x00")
    finally:
        response.close()


@contextlib.contextmanager
def published_build(stack: RealStack, conn: Any, builder: ProjectUser,
                    code: int, events: list[dict[str, Any]], err: str) -> Iterator[str]:
    """The build succeeded and published its image; afterwards nothing else is left."""
    published = None
    try:
        assert code == 0, (err[-4000:], json.dumps(events[-3:]))
        published = assert_published(conn, events)
        yield published
    finally:
        finish(stack, conn, builder, published)


def finish(stack: RealStack, conn: Any, builder: ProjectUser, published: str | None) -> None:
    """No leftovers in any project (seen as admin), then drop the published image."""
    left = stack.leftovers(keep_images={published} if published else set(), users=[builder],
                           baseline=BASELINE)
    if published:
        conn.image.delete_image(published, ignore_missing=True)
    for image in conn.image.images(owner=builder.project_id):
        # an image a failed test promoted by mistake must not fail the next tests too
        if image.id not in stack.media.values():
            conn.image.delete_image(image, ignore_missing=True)
    assert left == []



def failed_report(events: list[dict[str, Any]]) -> dict[str, Any]:
    return [e for e in events if e["event"] == "build.failed"][-1]


def start_build(spec: Path, clouds: Path, workdir: Path, *extra: str) -> subprocess.Popen[str]:
    """`osbuild build` as its own process, so that it can be signalled or SIGKILLed."""
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    return subprocess.Popen(
        [sys.executable, "-m", "osbuild", "build", str(spec), "--os-cloud", REAL_CLOUD,
         "--time-scale", str(REAL_TIME_SCALE), "--log-dir", str(workdir / "logs"), "--json",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def in_stage(stage: str) -> Callable[[Event], bool]:
    """An event predicate: the guest reported starting ``stage``."""
    return lambda event: event["event"] == "stage" and event.get("stage") == stage and \
        event.get("status") == "start"


def kill_during(spec: Path, clouds: Path, workdir: Path, point: Callable[[Event], bool],
                *extra: str) -> str:
    """Start a build (state in ``workdir``/state), SIGKILL it at ``point``; its build id."""
    proc = start_build(spec, clouds, workdir, "--state-dir", str(workdir / "state"), *extra)
    events, _ = interrupt_when(proc, point, signal.SIGKILL, timeout=180, exit_timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return str(events[0]["build_id"])


def resume(build_id: str, workdir: Path, capsys: Any) -> tuple[int, list[Event], str]:
    """`osbuild resume BUILD_ID --json` in this process: exit code, events, stderr."""
    capsys.readouterr()
    code = main(["resume", build_id, "--state-dir", str(workdir / "state"),
                 "--time-scale", str(REAL_TIME_SCALE), "--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err
