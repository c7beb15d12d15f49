"""Child processes for the real services: setup commands and uWSGI-served apps, with logs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from osbuild.errors import OsbuildError

# openstacksdk and Cinder stream uploads in chunks; uWSGI's 1 MiB default refuses Cinder's.
CHUNKED_INPUT_LIMIT = 8 * 1024 * 1024
_LOG_TAIL_LINES = 30


class RealServicesError(OsbuildError):
    """A real service could not be set up, started or reached."""


# The repository root: the import root of `tests.support`, which is not installed.
REPO_ROOT = Path(__file__).resolve().parents[2]


def module_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) for a `python -m tests.support.X` child started in another folder.

    The test helpers live outside the wheel, so a child finds them only through the
    repository root on PYTHONPATH; it goes first so that the tree under test wins.
    """
    env = dict(os.environ if env is None else env)
    rest = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), rest) if p)
    return env


def tool(name: str) -> str | None:
    # Console scripts sit beside the interpreter in a venv; prefer them to anything on PATH
    # so that the services run from the same environment as the tests.
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = tool(name)
    if path is None:
        raise RealServicesError(f"{name} not found beside {sys.executable} or on PATH")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def dies_with_us(argv: list[str], sig: signal.Signals) -> list[str]:
    """``argv`` run so that the kernel sends it ``sig`` when the thread that starts it ends,
    however that happens (setpriv's PR_SET_PDEATHSIG, kept across exec). tox answers Ctrl-C
    with SIGKILL 0.5 s after its SIGINT, long before a stack is stopped, and a service must
    not outlive the tests."""
    setpriv = shutil.which("setpriv")
    return [setpriv, f"--pdeathsig={sig.name}", "--", *argv] if setpriv else argv


def run_logged(
    service: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log: Path,
    cwd: Path,
    secret: str | None = None,
) -> None:
    """Run a setup command (db_sync, bootstrap...) appending to ``log``; fail with its tail."""
    # The command line goes into the log and the error: mask the password, and leave out
    # the "--config-file PATH" pair that every manage command starts with.
    shown = " ".join(a.replace(secret, "***") if secret else a for a in argv[:1] + argv[3:])
    with log.open("ab") as out:
        out.write(f"$ {shown}\n".encode())
        out.flush()
        result = subprocess.run(
            dies_with_us(argv, signal.SIGKILL),
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False,
        )
    if result.returncode != 0:
        raise RealServicesError(
            f"{service}: `{shown}` exited {result.returncode}\n"
            f"--- {log} (tail) ---\n{log_tail(log)}"
        )


def spawn_service(argv: list[str], *, log: Path, env: dict[str, str], cwd: Path,
                  on_our_death: signal.Signals) -> subprocess.Popen[bytes]:
    """Start a service in a session of its own (a Ctrl-C meant for the tests does not reach
    it half-way; its stop signals the whole group), appending its output to ``log``; it gets
    ``on_our_death`` if the tests die first (:func:`dies_with_us`)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            dies_with_us(argv, on_our_death),
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
            start_new_session=True,
        )


@dataclass
class ServiceProcess:
    """One uWSGI-served application and where its log goes."""

    name: str
    url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self, port: int, app: str, *, env: dict[str, str], cwd: Path, chunked: bool) -> None:
        argv = [
            require_tool("uwsgi"),
            # The --http router keeps connections alive; --http-socket drops the kept-alive
            # connections keystoneauth reuses (measured here).
            "--http", f"127.0.0.1:{port}",
            "--http-keepalive",
            "--master",
            "--processes", "1",
            "--threads", "4",
            "--enable-threads",
            "--home", sys.prefix,
            "--module", app,
            "--need-app",
            # Without it SIGTERM makes the master reload the app instead of exiting.
            "--die-on-term",
            "--buffer-size", "65535",
            "--disable-logging",
        ]  # fmt: skip
        if chunked:
            argv += ["--http-chunked-input", "--chunked-input-limit", str(CHUNKED_INPUT_LIMIT)]
        # SIGINT: uWSGI's master stops its workers and router at once, then exits.
        self.process = spawn_service(argv, log=self.log, env=env, cwd=cwd,
                                     on_our_death=signal.SIGINT)

    def wait_ready(self, probe: str, ok: tuple[int, ...], timeout: float) -> None:
        """Poll ``probe`` until it answers one of ``ok``; fail with the log tail."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.running():
                code = self.process.returncode if self.process else None
                raise RealServicesError(
                    f"{self.name} exited with status {code} before answering {probe}\n"
                    f"--- {self.log} (tail) ---\n{log_tail(self.log)}"
                )
            status = http_status(probe)
            if isinstance(status, int) and status in ok:
                return
            last = str(status)
            time.sleep(0.25)
        raise RealServicesError(
            f"{self.name} did not answer {probe} within {timeout:.0f}s "
            f"(last: {last})\n--- {self.log} (tail) ---\n{log_tail(self.log)}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        # uWSGI runs a master, a worker and an HTTP router in its own session: signal the
        # group we created so that none of them outlives the test run.
        stop_process_group(self.process, signal.SIGINT, timeout)


def stop_process_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
                       first: signal.Signals, grace: float) -> None:
    """Signal a service's process group, and SIGKILL it if it has not gone after ``grace``
    seconds (a Nova with the libvirt driver, or a busy Cinder, may ignore SIGTERM)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, first)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


def proc_memory_kb(pid: int, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` size field (``VmHWM`` peak RSS, ``VmRSS``) in KiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """The process' peak resident set size in MiB, or None when it is gone."""
    peak = proc_memory_kb(pid, "VmHWM")
    return None if peak is None else peak / 1024


def http_status(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError) as exc:
        return type(exc).__name__


class Launcher:
    """A started service (or group of them) used as a context manager: ``start()`` on entry,
    ``stop()`` on exit, and a start that fails part-way is undone before its error goes on
    (each launcher's ``stop()`` copes with what was never started)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def abandon_start(self) -> None:
        """Undo a start that failed part-way; by default the same as ``stop()``."""
        self.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.abandon_start()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
