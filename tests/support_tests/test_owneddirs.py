"""Scratch directories that record their owner: a sweep removes the dead owners' only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def _owner_process(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another test session: its own process, holding a directory until killed."""
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, PREFIX, str(parent)],
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
