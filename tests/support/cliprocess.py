"""An `osbuild ... --json` subprocess as the tests drive it: read its events, interrupt it."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any

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
                   signum: int = signal.SIGINT, *, timeout: float = 120.0,
                   exit_timeout: float | None = None,
                   before_signal: Callable[[list[Event]], object] | None = None,
                   ) -> tuple[list[Event], str]:
    """Send ``signum`` once an event matches, wait for the exit; every event and stderr.

    ``before_signal`` gets the events read so far and runs just before the signal (checks of
    the build's state at that point); ``exit_timeout`` (default ``timeout``) bounds the wait
    for the exit. The process is killed if the test fails before it has exited, so none
    outlives it.
    """
    try:
        events = read_until(proc, predicate, timeout=timeout)
        if before_signal is not None:
            before_signal(events)
        proc.send_signal(signum)
        out, err = read_rest(proc, timeout if exit_timeout is None else exit_timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return events, err


def read_rest(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Stdout and stderr until the process exits.

    Not ``communicate()``: it reads the pipes' descriptors and so loses the lines that
    ``readline`` in :func:`read_until` has already read ahead into the stream's buffer.
    """
    assert proc.stdout is not None and proc.stderr is not None
    got: dict[int, str] = {}

    def drain(index: int, stream: IO[str]) -> None:
        got[index] = stream.read()

    readers = [threading.Thread(target=drain, args=(i, s), daemon=True)
               for i, s in enumerate((proc.stdout, proc.stderr))]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    if any(reader.is_alive() for reader in readers):
        proc.kill()  # the readers see the end of the pipes and finish (daemons if not)
        for reader in readers:
            reader.join(10)
        raise subprocess.TimeoutExpired(proc.args, timeout)
    proc.wait(max(1.0, deadline - time.monotonic()))
    return got[0], got[1]
