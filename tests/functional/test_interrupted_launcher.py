"""An interrupted real-services launcher leaves no process and no port behind.

An interrupted functional run once left real Keystone and Glance uWSGI servers running:
they live in sessions of their own, so no Ctrl-C reaches them, and tox 4 answers Ctrl-C
with SIGINT, SIGTERM 0.3 s later and SIGKILL 0.2 s after that (``interrupt_timeout`` and
``terminate_timeout``; tox/execute/local_sub_process/__init__.py, ``interrupt``), before
any teardown has had time to run. The launcher runs here in a child process
(``python -m tests.support.realservices up``) that is interrupted at each point.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.processes import module_env

pytestmark = pytest.mark.slow

READY_TIMEOUT = 120.0
GONE_TIMEOUT = 20.0


def _processes_in(workdir: Path) -> dict[int, tuple[int, str]]:
    """pid -> (process group, command line) of every process working in ``workdir``: the
    setup commands and every uWSGI master, worker and router of the launcher there."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd == workdir or workdir in cwd.parents:
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[2]), cmdline)
    return found


def _group_members(groups: set[int]) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) in groups:
                members.append(int(entry.name))
    return members


def _as_in_a_terminal() -> None:
    """A terminal's foreground job takes SIGINT; a job a script started in the background
    inherits it ignored (POSIX), and Python then installs no KeyboardInterrupt at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watched:
    """The launcher in a child process of its own group, and everything seen working in its
    workdir while it ran."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        self.workdir = tmp_path / "services"
        self.clouds_yaml = tmp_path / "clouds.yaml"
        self.seen: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self.child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.realservices", "up",
             "--workdir", str(self.workdir), "--clouds-yaml", str(self.clouds_yaml), *options],
            cwd=tmp_path, env=module_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True, preexec_fn=_as_in_a_terminal,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.output.append(line)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.seen.update(_processes_in(self.workdir))

    def wait_for(self, what: str, seen: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not seen():
            if self.child.poll() is not None:
                pytest.fail(f"the launcher exited before {what}:\n{''.join(self.output)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {READY_TIMEOUT:.0f}s:\n{''.join(self.output)}")
            time.sleep(0.05)

    def running(self, word: str) -> bool:
        return any(word in cmd for _, cmd in _processes_in(self.workdir).values())

    def uwsgi_groups(self) -> int:
        return len({g for g, cmd in self.seen.values() if "uwsgi" in cmd})

    def ports(self) -> set[int]:
        """The uWSGI servers' ports from their logs, and every URL the launcher printed."""
        ports = {int(p) for line in self.output
                 for p in re.findall(r"http://127\.0\.0\.1:(\d+)", line)}
        for log in (self.workdir / "logs").glob("*.log"):
            ports |= {int(p) for p in re.findall(r"bound on 127\.0\.0\.1:(\d+)", log.read_text())}
        return ports

    def ready(self) -> bool:
        return any(line.startswith("ready:") for line in self.output)

    def finish(self) -> list[str]:
        """Wait for the child to end; what it started that is still there after a grace."""
        try:
            self.child.wait(GONE_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()
            pytest.fail(f"the launcher did not exit:\n{''.join(self.output)}")
        self._stop.set()
        self._watcher.join()
        groups = {g for g, _ in self.seen.values()} - {self.child.pid}
        deadline = time.monotonic() + GONE_TIMEOUT
        while True:
            left = [f"pid {pid} ({cmd.strip()[:80]})" for pid, (g, cmd)
                    in _processes_in(self.workdir).items()]
            left += [f"pid {pid} in group {g}" for g in groups for pid in _group_members({g})]
            left += [f"port {p} still listening" for p in sorted(self.ports()) if _listening(p)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for pid in _group_members(groups):  # never leave a leak behind for the next test
            os.kill(pid, signal.SIGKILL)
        return left


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ctrl_c(watched: Watched) -> None:
    """What a terminal does: SIGINT to the launcher's whole foreground group."""
    os.killpg(watched.child.pid, signal.SIGINT)


def _tox_interrupt(watched: Watched) -> None:
    """Ctrl-C on ``tox``: the terminal's SIGINT, then tox's own SIGINT, SIGTERM, SIGKILL."""
    _ctrl_c(watched)
    for sig, pause in ((signal.SIGINT, 0.3), (signal.SIGTERM, 0.2), (signal.SIGKILL, 0.0)):
        if watched.child.poll() is not None:
            return
        os.kill(watched.child.pid, sig)
        time.sleep(pause)


@pytest.fixture
def watched(tmp_path: Path) -> Watched:
    return Watched(tmp_path)


@pytest.mark.parametrize("word", ["keystone-manage", "uwsgi"])
def test_ctrl_c_while_keystone_starts(watched: Watched, word: str) -> None:
    watched.wait_for(f"{word} running", lambda: watched.running(word))
    _ctrl_c(watched)
    assert watched.finish() == []


def test_ctrl_c_while_glance_starts(watched: Watched) -> None:
    watched.wait_for("glance's uWSGI", lambda: watched.uwsgi_groups() >= 2)
    _ctrl_c(watched)
    assert watched.finish() == []


def test_ctrl_c_once_started(watched: Watched) -> None:
    watched.wait_for("ready", lambda: any(line.startswith("ready:") for line in watched.output))
    assert len(watched.ports()) == 2
    _ctrl_c(watched)
    assert watched.finish() == []
    assert watched.child.returncode == 0


def test_ctrl_c_on_tox_once_started(watched: Watched) -> None:
    watched.wait_for("ready", lambda: any(line.startswith("ready:") for line in watched.output))
    _tox_interrupt(watched)
    assert watched.finish() == []


def test_ctrl_c_on_tox_while_starting(watched: Watched) -> None:
    watched.wait_for("keystone's uWSGI", lambda: watched.running("uwsgi"))
    _tox_interrupt(watched)
    assert watched.finish() == []


def test_up_with_nova_serves_the_cli_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    """The whole real stack for a person: a project user's cloud and the admin's, the guest
    pace and the example specs' MSI as asked, osbuild works against it, Ctrl-C ends it all."""
    msi = tmp_path / "CloudbaseInitSetup_x64.msi"
    watched = Watched(tmp_path, "--with-nova", "--guest-speed", "1200", "--msi", str(msi))
    try:
        watched.wait_for("ready", watched.ready)
        clouds = yaml.safe_load(watched.clouds_yaml.read_text())["clouds"]
        assert set(clouds) == {"osbuild-real", "osbuild-real-admin"}
        assert clouds["osbuild-real"]["auth"]["username"] != "admin"
        assert watched.clouds_yaml.stat().st_mode & 0o077 == 0
        assert msi.stat().st_size > 0
        control = next(watched.workdir.glob("stack/nova/guest-control.json"))
        assert '"speed": 1200.0' in control.read_text()
        # Nova, Cinder, Glance and the network all answer gc's listing as the project user.
        gc = subprocess.run(
            [sys.executable, "-m", "osbuild", "gc", "--dry-run", "--older-than", "0", "--json",
             "--os-cloud", "osbuild-real", "--state-dir", str(tmp_path / "state")],
            env=module_env({**os.environ,
                            "OS_CLIENT_CONFIG_FILE": str(watched.clouds_yaml)}),
            capture_output=True, text=True, timeout=120)
        assert gc.returncode == 0, gc.stderr
        listing = json.loads(gc.stdout)["osbuild-real"]
        assert (listing["removed"], listing["kept"]) == ([], []), listing
        assert len(watched.ports()) == 4  # keystone, glance, cinder, nova (+ its network)
    finally:
        _ctrl_c(watched)
    assert watched.finish() == []
    assert watched.child.returncode == 0
