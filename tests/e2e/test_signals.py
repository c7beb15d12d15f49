"""Ctrl-C and SIGTERM mid-build: the CLI (a real subprocess) cleans up and exits 130."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Cloud
from tests.support.cliprocess import Event, interrupt_when, read_until

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def start_build(cloud: Cloud, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
    return subprocess.Popen(
        [sys.executable, "-m", "osbuild", "build", str(cloud.spec()), "--os-cloud",
         cloud.sim.cloud_name, "--log-dir", str(cloud.log_dir),
         "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_watching_cleans_up_and_exits_130(cloud: Cloud, signum: int) -> None:
    def builder_running(_: list[Event]) -> None:
        assert any(item.startswith("server ") for item in cloud.leftovers())

    proc = start_build(cloud)
    events, err = interrupt_when(
        proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe", signum,
        before_signal=builder_running)
    assert proc.returncode == 130, err
    failed = [e for e in events if e["event"] == "build.failed"][-1]
    name = signal.Signals(signum).name
    # The guest's stage too, as a guest failure names it (found from outside, session 30).
    # The stage the signal came in, or the one before when it came between two.
    said = re.fullmatch(f"interrupted by {name} while running the install step "
                        r"\((after )?guest stage (\w+)\)", failed["reason"])
    assert said, failed["reason"]
    assert failed["stage"] == said[2] and said[2] in ("winpe", "specialize")
    [ended] = [e for e in events if e["event"] == "step.failed"]
    assert (ended["step"], ended["status"], ended["reason"]) == (
        "install", "interrupted", failed["reason"])
    assert cloud.leftovers() == []


def test_signal_during_volume_creation_leaves_nothing(cloud: Cloud) -> None:
    proc = start_build(cloud)
    _events, err = interrupt_when(
        proc, lambda e: e["event"] == "resource.created" and e["kind"] == "volume",
        signal.SIGTERM)
    assert proc.returncode == 130, err
    assert cloud.leftovers() == []


def test_second_ctrl_c_during_cleanup_does_not_leak(cloud: Cloud) -> None:
    proc = start_build(cloud)
    try:
        read_until(proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe")
        proc.send_signal(signal.SIGINT)
        # The first deletion means cleanup is under way; interrupt it too.
        read_until(proc, lambda e: e["event"] == "resource.deleted")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "still cleaning up" in err
    assert cloud.leftovers() == []


def _sigint_too_late_to_stop(cloud: Cloud, point: Callable[[Event], bool]) -> Event:
    """A build SIGINTed at ``point``, when it can no longer stop: it succeeds, says it was
    interrupted and exits 130; its build.succeeded event."""
    proc = start_build(cloud)
    events, err = interrupt_when(proc, point)
    assert proc.returncode == 130, err
    [done] = [e for e in events if e["event"] == "build.succeeded"]
    assert done["interrupted"] == "SIGINT" and done["promoted"] is True
    return done


def test_sigint_during_promote_finishes_it_keeps_the_image_and_exits_130(cloud: Cloud) -> None:
    # Slow Glance updates keep the promote step busy when the signal comes.
    cloud.sim.faults.add_rule(service="image", method="PATCH", latency=1.0)
    done = _sigint_too_late_to_stop(
        cloud, lambda e: e["event"] == "step.started" and e["step"] == "promote")
    image = cloud.sim.connect().image.get_image(done["image_id"])
    assert "osbuild-current" in image.tags
    assert cloud.leftovers(keep={done["image_id"]}) == []


def test_sigint_once_the_build_is_done_but_not_reported_exits_130(cloud: Cloud) -> None:
    # The rendered media go last; the reports and the state are written after them. A
    # Ctrl-C there printed "stopping and cleaning up" and the run exited 0 (found from
    # outside, session 28).
    done = _sigint_too_late_to_stop(
        cloud, lambda e: e["event"] == "resource.deleted" and e["kind"] == "local")
    assert cloud.leftovers(keep={done["image_id"]}) == []
