"""Scratch directories that record their owner: a sweep removes the dead owners' only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hypervisor import conftest as hypervisor
from tests.support import realcinder
from tests.support.owneddirs import LOCK_NAME, make_owned_dir, sweep_stale

PREFIX = "osbuild-volumes-"

_OWNER = """
import sys, time
from pathlib import Path
from tests.support.owneddirs import make_owned_dir
owned = make_owned_dir(sys.argv[1], Path(sys.argv[2]))
(owned.path / "volume-1").write_bytes(b"data")
print(owned.path, flush=True)
time.sleep(600)
"""


def _owner_process(parent: Path, prefix: str = PREFIX) -> tuple[subprocess.Popen[str], Path]:
    """Another test session: its own process, holding a directory until killed."""
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, prefix, str(parent)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


@pytest.fixture
def stale_and_live(tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[str]]]:
    dead, stale = _owner_process(tmp_path)
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=30)
    live, alive = _owner_process(tmp_path)
    yield stale, alive, live
    live.kill()
    live.wait(timeout=30)


def test_a_sweep_removes_a_killed_sessions_directory_and_keeps_a_live_ones(
    tmp_path: Path, stale_and_live: tuple[Path, Path, subprocess.Popen[str]]
) -> None:
    stale, alive, _ = stale_and_live
    mine = make_owned_dir(PREFIX, tmp_path)
    unrecorded = tmp_path / f"{PREFIX}from-before-owners-were-recorded"
    unrecorded.mkdir()
    other = tmp_path / "someone-elses"
    other.mkdir()
    (other / LOCK_NAME).write_text("1\n")

    assert (stale / "volume-1").exists() and (stale / LOCK_NAME).exists()
    assert sweep_stale(PREFIX, tmp_path) == [stale]
    assert not stale.exists()
    assert (alive / "volume-1").read_bytes() == b"data"
    assert mine.path.is_dir() and unrecorded.is_dir() and other.is_dir()
    mine.remove()
    assert not mine.path.exists()


def test_the_cinder_launcher_sweeps_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    stale_and_live: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    stale, alive, _ = stale_and_live
    monkeypatch.setattr(realcinder, "VOLUMES_PARENT", tmp_path)
    # Stops the start right after the sweep, before anything is spawned.
    monkeypatch.setattr(realcinder, "tool", lambda name: None)
    launcher = realcinder.RealCinder(services=None, workdir=tmp_path / "cinder")  # type: ignore[arg-type]
    with pytest.raises(realcinder.RealServicesError, match="qemu-img"):
        launcher.start()
    assert not stale.exists()
    assert alive.is_dir()


def test_the_hypervisor_tier_sweeps_a_killed_sessions_workdir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hypervisor, "WORKDIR_PARENT", tmp_path)
    dead, stale = _owner_process(tmp_path, hypervisor.WORKDIR_PREFIX)
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=30)
    # One kept by OSBUILD_KEEP_WORKDIR for its logs: the session released it.
    kept = make_owned_dir(hypervisor.WORKDIR_PREFIX, tmp_path)
    kept.release()

    first = hypervisor.make_workdir()
    second = hypervisor.make_workdir()  # another live session's sweep
    try:
        assert not stale.exists()
        assert kept.path.is_dir() and not (kept.path / LOCK_NAME).exists()
        assert first.path.is_dir() and first.path.parent == tmp_path
        assert first.path.stat().st_mode & 0o777 == 0o755  # QEMU (libvirt-qemu) reads below
    finally:
        first.remove()
        second.remove()
