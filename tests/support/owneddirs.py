"""Scratch directories that record their owner, and a sweep of those whose owner is gone.

A test process that is SIGKILLed cannot remove what it made under /var/tmp. Each directory
made here holds ``.owner.lock``, a file its process keeps open with an exclusive ``flock``;
the kernel drops the lock when the process dies however it dies. A sweep removes the
directories whose lock it can take and leaves alone those whose lock is held: another
session, perhaps from another checkout, is using them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".owner.lock"


@dataclass
class OwnedDir:
    """A directory this process owns until :meth:`remove` (or until it exits)."""

    path: Path
    _lock_fd: int

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def release(self) -> None:
        """Keep the directory for good: without its lock file no sweep takes it."""
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


def make_owned_dir(prefix: str, parent: Path) -> OwnedDir:
    """``parent/<prefix>XXXXXXXX`` with its lock held. The lock file gets its name only once
    locked, so a sweep never finds an unlocked ``.owner.lock`` of a live directory."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd, pending = tempfile.mkstemp(prefix=".owner-", dir=path)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.rename(pending, path / LOCK_NAME)
    return OwnedDir(path, fd)


def sweep_stale(prefix: str, parent: Path) -> list[Path]:
    """Remove this user's ``parent/<prefix>*`` directories whose owner is gone; return them.

    A directory without a lock file is left alone: it is being made, or was made before
    owners were recorded, and nothing here can tell whether it is still in use.
    """
    removed = []
    for path in sorted(parent.glob(f"{prefix}*")):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: a live session's
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed
