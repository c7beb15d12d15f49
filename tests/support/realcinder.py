"""Real Cinder 29 (API, scheduler, volume) in one child process, behind real Keystone/Glance.

>>> with RealServices(tmp) as rs, RealCinder(rs) as cinder:
...     conn = rs.connect(user.auth(rs.auth_url))
...     conn.block_storage.create_volume(size=1)

The child runs :mod:`tests.support.cinder_service` (its own interpreter, so Cinder's
eventlet monkey patching and global oslo.config never meet the tests' or Nova's). Volumes
are sparse files under ``<workdir>/cinder/volumes`` (:mod:`tests.support.filevolumes`);
the log is ``<workdir>/logs/cinder.log``. The service is registered in Keystone's catalog
as ``block-storage`` (openstacksdk asks for that type and accepts ``volumev3`` too;
Nova's ``[cinder] catalog_info`` default ``volumev3::publicURL`` matches it through
keystoneauth's service-type aliases) at ``http://127.0.0.1:<port>/v3``.

Quotas: the ``default`` quota class is unlimited; a test that wants a quota error sets
one project's limits as admin (``conn.block_storage.update_quota_set(project, volumes=1)``
or :meth:`RealCinder.set_quota`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.owneddirs import OwnedDir, make_owned_dir, sweep_stale
from tests.support.processes import (
    Launcher,
    RealServicesError,
    http_status,
    log_tail,
    module_env,
    proc_memory_kb,
    spawn_service,
    stop_process_group,
    tool,
)
from tests.support.realservices import SERVICE_PROJECT, RealServices

READY_TIMEOUT = 120.0
STOP_GRACE = 5.0
SERVICE_TYPE = "block-storage"
SERVICE_NAME = "cinderv3"
PASSWORD_ENV = "OSBUILD_CINDER_SERVICE_PASSWORD"  # as tests.support.cinder_service reads
# Where the volumes go when the workdir is on tmpfs; every start sweeps the stale ones.
VOLUMES_PARENT = Path("/var/tmp")
VOLUMES_PREFIX = "osbuild-volumes-"


MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem ``path`` is on (longest mount point in /proc/mounts)."""
    resolved = str(Path(path).resolve())
    best, kind = "", None
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, fields[2]
    except OSError:
        return None
    return kind


    return None


@dataclass
class RealCinder(Launcher):
    """Cinder's three services in one process; a context manager. Needs a started
    :class:`RealServices` (Keystone for auth and the catalog, Glance for images)."""

    services: RealServices
    workdir: Path | None = None
    # driver_volume_type of connection_info: "local" (Nova's fake virt driver takes any);
    # "gpfs" for Nova's libvirt driver, which then writes a plain <disk type='file'>.
    connection_type: str = "local"
    ready_timeout: float = READY_TIMEOUT
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    service_id: str | None = None
    service_auth: dict[str, str] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_kb: int | None = None
    _volumes_dir: Path | None = field(default=None, repr=False)
    _own_volumes_dir: OwnedDir | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir or self.services.workdir / "cinder")

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """The block-storage v3 endpoint registered in the catalog."""
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def volumes_dir(self) -> Path:
        """Where the backing files are: ``<workdir>/volumes`` unless that is on tmpfs."""
        if self._volumes_dir is None:
            assert self.workdir is not None
            self._volumes_dir = self.workdir / "volumes"
        return self._volumes_dir

    @property
    def log(self) -> Path:
        return self.services.logs_dir / "cinder.log"

    def volume_path(self, volume_id: str) -> Path:
        """The backing file of a volume (Cinder names it ``volume-<id>``)."""
        return self.volumes_dir / f"volume-{volume_id}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kb(self) -> dict[str, int | None]:
        """Current and peak resident memory of the Cinder process, KiB."""
        if not self.running():
            return {"rss": None, "peak": self.peak_rss_kb}
        assert self.process is not None
        return {
            "rss": proc_memory_kb(self.process.pid, "VmRSS"),
            "peak": proc_memory_kb(self.process.pid, "VmHWM"),
        }

    @property
    def peak_rss(self) -> float | None:
        """Peak resident memory in MiB (while running, or as it was when stopped)."""
        peak = self.rss_kb()["peak"]
        return None if peak is None else peak / 1024

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            self.peak_rss_kb = proc_memory_kb(proc.pid, "VmHWM")
            stop_process_group(proc, signal.SIGTERM, STOP_GRACE)
        if self.service_id and self.services.keystone and self.services.keystone.running():
            with contextlib.suppress(Exception):
                self.services.unregister_service(self.service_id)
        self.service_id = None
        if self._own_volumes_dir is not None:
            self._own_volumes_dir.remove()
            self._own_volumes_dir = None

    def set_quota(self, project_id: str, **limits: int) -> None:
        """Per-project Cinder quotas (``volumes=1``, ``gigabytes=10``...; -1 unlimited)."""
        conn = self.services.connect()
        conn.block_storage.update_quota_set(project_id, **limits)

    # ------------------------------------------------------------------ internals

    def start(self) -> None:
        # Left by sessions that were SIGKILLed; a live session's are locked and stay.
        sweep_stale(VOLUMES_PREFIX, VOLUMES_PARENT)
        if tool("qemu-img") is None:
            # Cinder calls it for every image<->volume copy.
            raise RealServicesError(
                "qemu-img not found: install Debian's qemu-utils (.ci/run does)"
            )
        began = time.monotonic()
        assert self.workdir is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        if filesystem_type(self.workdir) in MEMORY_FILESYSTEMS:
            # QEMU opens volumes with O_DIRECT (cache='none'), which tmpfs refuses.
            self._own_volumes_dir = make_owned_dir(VOLUMES_PREFIX, VOLUMES_PARENT)
            self._volumes_dir = self._own_volumes_dir.path
        self.volumes_dir.mkdir(exist_ok=True)
        self.services.logs_dir.mkdir(parents=True, exist_ok=True)
        # A fresh name each start: a session may restart Cinder.
        self.service_auth = self.services.create_service_user(f"cinder-{os.urandom(3).hex()}")
        policy = self.workdir / "policy.yaml"
        policy.write_text("")  # empty: Cinder's own defaults apply
        settings = {
            "workdir": str(self.workdir),
            "policy_file": str(policy),
            "glance_url": self.services.glance_url,
            "auth_url": self.services.auth_url,
            "username": self.service_auth["username"],
            "project_name": SERVICE_PROJECT,
            "region": "RegionOne",
            "connection_type": self.connection_type,
            "volumes_dir": str(self.volumes_dir),
            "port": 0,
        }
        settings_path = self.workdir / "settings.json"
        settings_path.write_text(json.dumps(settings, indent=1))
        ready_path = self.workdir / "ready.json"
        ready_path.unlink(missing_ok=True)
        env = module_env({**os.environ, PASSWORD_ENV: self.service_auth["password"]})
        self.process = spawn_service(
            [sys.executable, "-m", "tests.support.cinder_service", str(settings_path)],
            log=self.log, env=env, cwd=self.workdir, on_our_death=signal.SIGKILL)
        ready = self._wait_ready_file(ready_path)
        self.port = int(ready["port"])
        self.timings["process_ready"] = time.monotonic() - began
        self.service_id = self.services.register_service(SERVICE_TYPE, SERVICE_NAME, self.url)
        self._check_auth()
        self.timings["startup"] = time.monotonic() - began

    def _wait_ready_file(self, path: Path) -> dict[str, Any]:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if path.exists():
                return dict(json.loads(path.read_text()))
            if not self.running():
                code = self.process.returncode if self.process else None
                raise RealServicesError(
                    f"cinder exited with status {code} before it was ready\n"
                    f"--- {self.log} (tail) ---\n{log_tail(self.log)}"
                )
            time.sleep(0.2)
        raise RealServicesError(
            f"cinder was not ready within {self.ready_timeout:.0f}s\n"
            f"--- {self.log} (tail) ---\n{log_tail(self.log)}"
        )

    def _check_auth(self) -> None:
        # The version document needs no token; a listing proves keystonemiddleware, the
        # catalog entry and the database.
        status = http_status(f"http://127.0.0.1:{self.port}/")
        try:
            list(self.services.connect().block_storage.volumes(limit=1))
        except Exception as exc:
            raise RealServicesError(
                f"cinder at {self.url} (versions: {status}) refuses an authenticated "
                f"request: {exc}\n--- {self.log} (tail) ---\n{log_tail(self.log)}"
            ) from None
