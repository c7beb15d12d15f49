"""libvirtd and virtlogd from Debian's packages, started (and stopped) by the tests.

>>> with Libvirt(workdir, domain_prefix="osbuildtest-") as lv:
...     RealNova(..., libvirt_uri=lv.uri, instance_name_template=lv.name_template)

libvirtd listens on a socket in ``workdir`` (its own config file, pid file and log), so it
never meets a libvirtd of the machine. virtlogd, which QEMU's console log goes through, has
a fixed socket (/run/libvirt/virtlogd-sock): one that runs already is used, else one is
started and stopped after. Every domain whose name starts with ``domain_prefix`` is
destroyed and undefined when the launcher starts (leftovers of a killed run stop Nova's
compute from starting) and when it stops.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import Launcher, RealServicesError, log_tail

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
TOOLS = ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64")


def missing() -> str | None:
    """Why libvirt with QEMU cannot run here, or None."""
    lacking = [t for t in TOOLS if shutil.which(t) is None]
    if lacking:
        return ("not installed: " + ", ".join(lacking)
                + " (Debian: libvirt-daemon-system qemu-system-x86; .ci/run installs them)")
    if os.geteuid() != 0:
        return "libvirtd for QEMU domains on the system connection needs root"
    try:
        import libvirt  # noqa: F401  (Nova's libvirt driver imports it)
    except ImportError:
        return "the libvirt Python binding is missing (pip install libvirt-python)"
    return None


@dataclass
class Libvirt(Launcher):
    workdir: Path
    domain_prefix: str = "osbuildtest-"
    started: list[tuple[str, Path]] = field(default_factory=list)  # (name, pid file)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    @property
    def socket(self) -> Path:
        return self.workdir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    @property
    def name_template(self) -> str:
        """Nova's ``instance_name_template`` for domains this launcher cleans up."""
        return self.domain_prefix + "%08x"

    @property
    def log(self) -> Path:
        return self.workdir / "libvirtd.log"

    def start(self) -> None:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not _answers(VIRTLOGD_SOCKET):
            pid_file = self.workdir / "virtlogd.pid"
            subprocess.run(["virtlogd", "-d", "-p", str(pid_file)], check=True)
            self.started.append(("virtlogd", pid_file))
        conf = self.workdir / "libvirtd.conf"
        conf.write_text(
            f'unix_sock_dir = "{self.workdir}"\n'
            'unix_sock_ro_perms = "0700"\nunix_sock_rw_perms = "0700"\n'
            f'log_outputs = "3:file:{self.log}"\n')
        pid_file = self.workdir / "libvirtd.pid"
        subprocess.run(["libvirtd", "-d", "-f", str(conf), "-p", str(pid_file)], check=True)
        self.started.append(("libvirtd", pid_file))
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            done = self.virsh("version", check=False)
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RealServicesError(
                    f"libvirtd did not answer on {self.socket} within {READY_TIMEOUT:.0f}s: "
                    f"{done.stderr.strip()}\n--- {self.log} (tail) ---\n{log_tail(self.log)}")
            time.sleep(0.3)
        self.remove_domains()
        self.timings["libvirt"] = time.monotonic() - began

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_domains()
        for name, pid_file in reversed(self.started):
            _stop_pid_file(name, pid_file)
        self.started.clear()

    # ------------------------------------------------------------------ domains

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True,
                              text=True, timeout=60)
        if check and done.returncode != 0:
            raise RealServicesError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
        return done

    def domains(self) -> list[str]:
        """Names of every domain of ours (running or not)."""
        out = self.virsh("list", "--all", "--name").stdout
        return [n for n in out.split() if n.startswith(self.domain_prefix)]

    def remove_domains(self) -> list[str]:
        """Destroy and undefine every domain of ours; their names."""
        names = self.domains()
        for name in names:
            self.virsh("destroy", name, check=False)
            self.virsh("undefine", "--nvram", name, check=False)
        return names


def _answers(sock: Path) -> bool:
    import socket as socket_module

    if not sock.exists():
        return False
    with socket_module.socket(socket_module.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _stop_pid_file(name: str, pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
