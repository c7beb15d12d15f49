"""An `osbuild ... --json` subprocess as the tests drive it: read its events, interrupt it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


def read_until(proc: subprocess.Popen[str], predicate: Callable[[Event], bool],
               timeout: float = 120.0) -> list[Event]:
    """JSON events from the subprocess until one matches ``predicate`` (that one included)."""
    assert proc.stdout is not None
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        events.append(event)
        if predicate(event):
            return events
    stderr = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    raise AssertionError(f"never saw the awaited event; got {[e['event'] for e in events]}"
                         f"\n{stderr}")


def interrupt_when(proc: subprocess.Popen[str], predicate: Callable[[Event], bool],
                   signum: int = signal.SIGINT, *, timeout: float = 120.0
                   ) -> tuple[list[Event], str]:
    """Send ``signum`` once an event matches, wait for the exit; every event and stderr.

    The process is killed if the test fails before it has exited, so none outlives it.
    """
    try:
        events = read_until(proc, predicate, timeout=timeout)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    events += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return events, err
