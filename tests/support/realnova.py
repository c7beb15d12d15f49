"""Start real Nova 34 (one process) behind the real Keystone and Glance of the functional tier.

The Nova process (:mod:`tests.support.novaprocess`) runs nova-api, conductor, scheduler,
one compute with :class:`tests.support.guestdriver.GuestDriver` (the simulated Windows
guest) and real Placement. It is registered in the catalog as ``compute``, and as
``network``: Nova's NeutronFixture is the network, served read-only (plus port deletion)
on the same port, so the network osbuild finds by name is the one Nova plugs servers into.

State lives in memory: :meth:`RealNova.restart` brings up an empty Nova on the same port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osbuild_sim.guest import GuestScenario
from tests.support.guestcontrol import write_control
from tests.support.processes import (
    Launcher,
    RealServicesError,
    log_tail,
    module_env,
    peak_rss_mb,
    spawn_service,
    stop_process_group,
)
from tests.support.realservices import REGION, SERVICE_PROJECT, RealServices

READY_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0
NETWORK_PREFIX = "/networking"


def _paste_ini() -> Path:
    candidates = [Path(sys.prefix) / "etc" / "nova" / "api-paste.ini"]
    import nova

    candidates.append(Path(nova.__file__).parent.parent / "etc" / "nova" / "api-paste.ini")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RealServicesError(
        "nova's api-paste.ini not found (looked in "
        + ", ".join(str(c) for c in candidates) + "); is nova installed from a wheel?"
    )


    return None


@dataclass
class RealNova(Launcher):
    """``with RealNova(rs, workdir) as nova:`` real Nova registered in ``rs``'s catalog."""

    rs: RealServices
    workdir: Path
    speed: float = 600.0  # simulated guest seconds per real second
    cinder_url: str | None = None
    ready_timeout: float = READY_TIMEOUT
    # None: the simulated guest (GuestDriver); a connection URI: Nova's libvirt driver with
    # QEMU on that libvirtd (tests.support.libvirtdriver), domains named with
    # ``instance_name_template``, their live XML saved under ``domain_xml_dir``.
    libvirt_uri: str | None = None
    instance_name_template: str = "instance-%08x"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    scenarios: dict[str, GuestScenario] = field(default_factory=dict)
    failing_snapshots: tuple[str, ...] = ()  # server name patterns (fail_snapshots)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss: float | None = None
    service_ids: list[str] = field(default_factory=list)
    _service_auth: dict[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def compute_url(self) -> str:
        return self.url + "/v2.1"

    @property
    def network_url(self) -> str:
        return self.url + NETWORK_PREFIX

    @property
    def log(self) -> Path:
        return self.workdir / "nova.log"

    @property
    def control_file(self) -> Path:
        return self.workdir / "guest-control.json"

    @property
    def guest_state(self) -> Path:
        return self.workdir / "guests"

    @property
    def domain_xml_dir(self) -> Path:
        return self.workdir / "domain-xml"

    # ------------------------------------------------------------------ control

    def set_guest_scenario(self, server_name_pattern: str, scenario: GuestScenario) -> None:
        """Guests of servers whose name matches (fnmatch) run ``scenario`` from their next
        spawn on."""
        self.scenarios[server_name_pattern] = scenario
        self._write_control()

    def clear_guest_scenarios(self) -> None:
        self.scenarios.clear()
        self.failing_snapshots = ()
        self._write_control()

    def fail_snapshots(self, server_name_pattern: str) -> None:
        """createImage of servers whose name matches fails its upload, as when Glance
        answers 500 (tests.support.guestdriver snapshot)."""
        self.failing_snapshots = (*self.failing_snapshots, server_name_pattern)
        self._write_control()

    def set_speed(self, speed: float) -> None:
        self.speed = speed
        self._write_control()

    def _write_control(self) -> None:
        write_control(self.control_file, speed=self.speed, scenarios=self.scenarios,
                      failing_snapshots=self.failing_snapshots)

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.guest_state.mkdir(exist_ok=True)
        self._write_control()
        if self._service_auth is None:
            # One per launcher: a module-scoped stack is started more than once a session.
            self._service_auth = self.rs.create_service_user(f"nova-{secrets.token_hex(4)}")
            self._grant_service_role()
        settings = {
            "workdir": str(self.workdir),
            "port": self.port,
            "region": REGION,
            "glance_url": self.rs.glance_url,
            "cinder_url": self.cinder_url,
            "service_auth": self._service_auth,
            "paste_source": str(_paste_ini()),
            "api_paste_config": str(self.workdir / "api-paste.ini"),
            "instances_path": str(self.workdir / "instances"),
            "state_path": str(self.workdir / "state"),
            "guest_state": str(self.guest_state),
            "guest_control": str(self.control_file),
        }
        if self.libvirt_uri:
            settings.update({
                "virt": "libvirt", "libvirt_uri": self.libvirt_uri,
                "instance_name_template": self.instance_name_template,
                "domain_xml_dir": str(self.domain_xml_dir),
            })
        settings_file = self.workdir / "settings.json"
        ready_file = settings_file.with_suffix(".ready")
        ready_file.unlink(missing_ok=True)
        fd = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(settings, fh)
        self.process = spawn_service(
            [sys.executable, "-m", "tests.support.novaprocess", str(settings_file)],
            log=self.log, env=module_env(), cwd=self.workdir, on_our_death=signal.SIGKILL)
        deadline = time.monotonic() + self.ready_timeout
        while not ready_file.exists():
            if self.process.poll() is not None:
                raise RealServicesError(
                    f"nova exited with status {self.process.returncode} while starting\n"
                    f"--- {self.log} (tail) ---\n{log_tail(self.log)}")
            if time.monotonic() > deadline:
                raise RealServicesError(
                    f"nova not ready within {self.ready_timeout:.0f}s\n"
                    f"--- {self.log} (tail) ---\n{log_tail(self.log)}")
            time.sleep(0.2)
        ready = json.loads(ready_file.read_text())
        self.port = int(ready["port"])
        self.timings["nova_setup"] = float(ready["setup_seconds"])
        if not self.service_ids:
            self.service_ids.append(self.rs.register_service("compute", "nova", self.compute_url))
            self.service_ids.append(
                self.rs.register_service("network", "neutron", self.network_url))
        self._check_ready(deadline)
        self.timings["nova"] = time.monotonic() - began

    def _grant_service_role(self) -> None:
        # Nova sends a service token with the user's on calls to Cinder ([service_user]);
        # keystonemiddleware (service_token_roles_required) refuses the whole request with
        # 401 unless that token carries the "service" role.
        conn = self.rs.connect()
        role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
        project = conn.identity.find_project(SERVICE_PROJECT, ignore_missing=False)
        assert self._service_auth is not None
        user = conn.identity.find_user(self._service_auth["username"], ignore_missing=False)
        conn.identity.assign_project_role_to_user(project, user, role)

    def _check_ready(self, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                conn = self.rs.connect()
                list(conn.compute.flavors())
                list(conn.network.networks())
                return
            except Exception as exc:
                last = exc
                time.sleep(0.5)
        raise RealServicesError(
            f"nova at {self.url} refuses an authenticated request: {last}\n"
            f"--- {self.log} (tail) ---\n{log_tail(self.log)}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the process and take Nova out of the catalog: a later RealNova in the same
        Keystone would otherwise share ``compute`` with a dead endpoint."""
        self._stop_process()
        for service_id in self.service_ids:
            with contextlib.suppress(Exception):
                self.rs.unregister_service(service_id)
        self.service_ids.clear()

    def _stop_process(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        self.peak_rss = peak_rss_mb(proc.pid)
        stop_process_group(proc, signal.SIGTERM, STOP_TIMEOUT)

    def kill(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        self.peak_rss = peak_rss_mb(proc.pid) or self.peak_rss
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop (or after :meth:`kill`) and start an empty Nova on the same port; its
        catalog entries stay."""
        self._stop_process()
        self.start()

    def current_rss_mb(self) -> float | None:
        return peak_rss_mb(self.process.pid) if self.running() and self.process else None

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "timings": dict(self.timings), "peak_rss_mb": self.peak_rss,
                "scenarios": {k: dataclasses.asdict(v) for k, v in self.scenarios.items()}}
