"""Is a build's osbuild still alive? Its state names the host and pid that ran it; only on
that host does the pid mean anything. One answer for `status`, `resume` and `gc`."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from osbuild.unattended.state import BuildState


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A recycled pid belongs to some other program: only an osbuild process counts.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"osbuild" in handle.read()
    except OSError:
        return True


def osbuild_alive(state: BuildState, *, hostname: str | None = None,
                  alive: Callable[[int], bool] = pid_alive) -> bool | None:
    """Whether the osbuild that ran ``state`` is alive; None when it ran on another host.

    ``hostname`` (this host's name) and ``alive`` (a pid check) are for tests.
    """
    if state.host != (socket.gethostname() if hostname is None else hostname):
        return None
    return alive(state.pid)
