"""Is a build's osbuild alive: only on the host that ran it, and only an osbuild process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuild.errors import InvalidInput
from osbuild.pipeline.resume import load_resumable
from osbuild.unattended.process import osbuild_alive, pid_alive
from osbuild.unattended.state import BuildState, StateStore

BUILD_ID = "20260101t000000-abcdef"


def _state(host: str, pid: int) -> BuildState:
    return BuildState(build_id=BUILD_ID, family="unit", cloud="c", spec_path="s",
                      spec_digest="d", host=host, pid=pid)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that names itself osbuild on its command line, as `osbuild build` does."""
    with _running([sys.executable, "-c", "import time; print('up', flush=True); "
                   "time.sleep(60)", "osbuild"]) as proc:
        yield proc


@contextlib.contextmanager
def _running(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    # Until the program runs, its /proc/PID/cmdline may read empty: wait for its "up".
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_an_osbuild_process_is_alive_until_it_exits(sleeper: subprocess.Popen[bytes]) -> None:
    assert pid_alive(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert not pid_alive(sleeper.pid)


def test_a_pid_taken_by_another_program_is_not_the_build() -> None:
    # Not Python: its path may hold "osbuild" (a checkout of that name, its tox venv).
    with _running(["sh", "-c", "echo up; sleep 60"]) as other:
        assert not pid_alive(other.pid)


def test_on_this_host_the_pid_answers(sleeper: subprocess.Popen[bytes]) -> None:
    here = socket.gethostname()
    assert osbuild_alive(_state(here, sleeper.pid)) is True
    sleeper.kill()
    sleeper.wait()
    assert osbuild_alive(_state(here, sleeper.pid)) is False


def test_on_another_host_the_pid_means_nothing(sleeper: subprocess.Popen[bytes]) -> None:
    asked: list[int] = []

    def alive(pid: int) -> bool:
        asked.append(pid)
        return True

    assert osbuild_alive(_state("elsewhere", sleeper.pid)) is None
    assert osbuild_alive(_state("elsewhere", 7), hostname="here", alive=alive) is None
    assert asked == []
    assert osbuild_alive(_state("here", 7), hostname="here", alive=alive) is True
    assert asked == [7]


def test_resume_refuses_a_build_whose_osbuild_is_alive_here(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    store = StateStore(tmp_path)
    store.create(_state(socket.gethostname(), sleeper.pid))
    with pytest.raises(InvalidInput, match=f"is still running \\(pid {sleeper.pid}\\)"):
        load_resumable(store, BUILD_ID)
