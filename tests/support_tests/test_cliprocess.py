"""tests.support.cliprocess against a small child that prints JSON events like ``--json``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.support.cliprocess import Event, interrupt_when

_CHILD = """
import json, signal, sys, time
def stop(signum, frame):
    print(json.dumps({"event": "interrupted", "signal": signum}), flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, stop if sys.argv[1] == "handle" else signal.SIG_IGN)
# One write: the reader gets the ticks together and buffers the third while it reads the
# second; the signal, held back until then, always comes after all of them.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
ticks = [json.dumps({"event": "tick", "n": n}) for n in range(3)]
sys.stdout.write("\\n".join([*ticks, "a line that is not an event"]) + "\\n")
sys.stdout.flush()
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
time.sleep(60)
"""


def child(on_sigint: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, on_sigint], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def second_tick(e: Event) -> bool:
    return e["event"] == "tick" and e["n"] == 1


def test_the_hook_runs_at_the_event_before_the_signal_and_every_event_comes_back() -> None:
    seen: list[list[Event]] = []
    proc = child("handle")
    events, _ = interrupt_when(proc, second_tick, before_signal=lambda got: seen.append(list(got)))
    assert seen == [[{"event": "tick", "n": 0}, {"event": "tick", "n": 1}]]
    assert events == [{"event": "tick", "n": 0}, {"event": "tick", "n": 1},
                      {"event": "tick", "n": 2}, {"event": "interrupted", "signal": 2}]
    assert proc.returncode == 130


def test_a_failing_hook_sends_no_signal_and_the_process_is_killed() -> None:
    def fails(_: list[Event]) -> None:
        raise AssertionError("the state was wrong")

    proc = child("handle")
    with pytest.raises(AssertionError, match="the state was wrong"):
        interrupt_when(proc, second_tick, before_signal=fails)
    assert proc.returncode == -signal.SIGKILL


def test_exit_timeout_bounds_the_wait_for_the_exit_then_the_process_is_killed() -> None:
    proc = child("ignore")
    began = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        interrupt_when(proc, second_tick, timeout=30, exit_timeout=0.5)
    assert time.monotonic() - began < 10
    assert proc.returncode == -signal.SIGKILL
