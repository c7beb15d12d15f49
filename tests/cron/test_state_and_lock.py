"""Durable build state and the family lock, through `osbuild build`."""

from __future__ import annotations

import json
import signal
import stat

import pytest

from osbuild.unattended.lock import LocalLock
from osbuild.unattended.state import BuildStatus
from tests.cron.conftest import Cron, read_until
from tests.support.cliprocess import Event, interrupt_when

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_state_records_steps_resources_and_outcome_without_secrets(cron: Cron) -> None:
    run = cron.build(cron.spec())
    assert run.exit_code == 0, run.why
    done = run.success
    [state] = cron.states()
    assert state.build_id == done["build_id"]
    assert state.status is BuildStatus.SUCCEEDED
    assert state.steps_done[:5] == ["preflight", "render", "claim", "upload-config", "volumes"]
    assert state.steps_done[-1] == "promote"
    assert state.image_id == done["image_id"]
    install = state.records["install"]
    assert install["sysprep_reached"] and install["last_stage"] == "sysprep"
    assert state.fingerprint and len(state.fingerprint) == 64
    assert state.records["publish"]["fingerprint"] == state.fingerprint
    assert state.records["preflight"]["windows_iso"]["id"]
    # Everything else it created was deleted, so only the product is left on record.
    assert state.resources == {"image:image": done["image_id"]}
    # What steps deleted before the end is noted as released: a resume needs none of it.
    assert {"volume:iso", "volume:virtio", "volume:config", "volume:target",
            "image:config", "server:verify"} <= set(state.released)
    path = cron.store.path_for(state.build_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "password" not in text.lower()
    # Every resource that was created went into the state while the build ran.
    created = {e["id"] for e in run.named("resource.created") if e["kind"] != "local"}
    report = json.loads((cron.cloud.log_dir / state.build_id / "report.json").read_text())
    assert created <= {r["id"] for r in report["resources"]}


def test_state_holds_ids_while_the_build_runs(cron: Cron) -> None:
    def installing(events: list[Event]) -> None:
        state = cron.store.load(events[0]["build_id"])
        assert state.status is BuildStatus.RUNNING
        assert state.step == "install"
        server = next(e["id"] for e in events
                      if e["event"] == "resource.created" and e["kind"] == "server")
        assert state.resources["server:builder"] == server
        assert {"volume:iso", "volume:virtio", "volume:config", "image:config"} <= set(
            state.resources)
        assert state.pid == proc.pid

    proc = cron.start(cron.spec())
    interrupt_when(proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe",
                   signal.SIGTERM, before_signal=installing)
    assert cron.leftovers() == []


def test_busy_family_is_a_skip_with_exit_0(cron: Cron) -> None:
    spec = cron.spec()
    holder = LocalLock(cron.store.locks_dir, cron.sim.cloud_name, "ws2022-standard")
    holder.acquire(build_id="20261126t000000-aaaaaa")
    try:
        run = cron.build(spec)
    finally:
        holder.release()
    assert run.exit_code == 0, run.why
    [skip] = run.named("build.skipped")
    assert "already being built" in skip["reason"] and "20261126t000000-aaaaaa" in skip["reason"]
    assert not run.named("build.started")
    assert "error" not in run.stderr
    assert cron.leftovers() == []


def test_two_concurrent_builds_one_builds_one_skips(cron: Cron) -> None:
    # The guest goes on while the first run is frozen (seconds of real time): at the
    # real guest pace it is still installing when the run wakes up.
    cron.sim.world.work_pace = 1.0
    spec = cron.spec()
    first = cron.start(spec)
    try:
        read_until(first, lambda e: e["event"] == "stage" and e["stage"] == "winpe")
        # Frozen mid-install, the first run still holds the lock and its builder: the
        # second must meet it however slowly it starts.
        first.send_signal(signal.SIGSTOP)
        second = cron.start(spec)
        out2, err2 = second.communicate(timeout=120)
        first.send_signal(signal.SIGCONT)
        out1, err1 = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
    assert second.returncode == 0, err2
    events2 = [json.loads(line) for line in out2.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events2] == ["build.skipped"]
    assert "already being built" in events2[0]["reason"]
    assert first.returncode == 0, err1
    events1 = [json.loads(line) for line in out1.splitlines() if line.startswith("{")]
    image = next(e for e in events1 if e["event"] == "build.succeeded")["image_id"]
    assert cron.leftovers(keep={image}) == []


def test_wait_lock_waits_for_the_other_build_then_builds(cron: Cron) -> None:
    # The guest goes on while the first run is frozen (seconds of real time): at the
    # real guest pace it is still installing when the run wakes up.
    cron.sim.world.work_pace = 1.0
    spec = cron.spec()
    first = cron.start(spec)
    try:
        read_until(first, lambda e: e["event"] == "stage" and e["stage"] == "winpe")
        first.send_signal(signal.SIGSTOP)
        # The cloud's hours (osbuild.cloud.clock): 24h is 144 s of real time at SPEED 600.
        second = cron.start(spec, "--wait-lock", "24h")
        # The second run reaches the lock while the first is frozen, and says it waits.
        waited = read_until(second, lambda e: e["event"] == "info"
                            and "for the family lock" in e["message"])
        first.send_signal(signal.SIGCONT)
        out2, err2 = second.communicate(timeout=300)
        out2 = "\n".join(json.dumps(e) for e in waited) + "\n" + out2
        out1, err1 = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    events2 = [json.loads(line) for line in out2.splitlines() if line.startswith("{")]
    assert not [e for e in events2 if e["event"] == "build.skipped"]
    images = [json.loads(line)["image_id"] for out in (out1, out2) for line in out.splitlines()
              if line.startswith("{") and json.loads(line)["event"] == "build.succeeded"]
    assert len(set(images)) == 2
    states = {s.build_id: s for s in cron.states()}
    assert all(s.status is BuildStatus.SUCCEEDED for s in states.values())
    # The waiting build started only after the first one had finished.
    first_state, second_state = sorted(states.values(), key=lambda s: s.started_at)
    assert second_state.started_at >= first_state.updated_at


def test_wait_lock_counts_on_the_clouds_clock(cron: Cron) -> None:
    # Every duration osbuild takes is in the cloud's seconds (osbuild.cloud.clock); the lock
    # wait counted real ones, so against `osbuild sim serve` (600x) `--wait-lock 30m` said
    # "waiting up to 30m" and then waited 30 real minutes: 300 of the cloud's hours.
    from tests.support.cliprocess import read_rest

    holder = LocalLock(cron.store.locks_dir, cron.sim.cloud_name, "ws2022-standard")
    holder.acquire(build_id="20261126t000000-aaaaaa")
    try:
        waiting = cron.start(cron.spec(), "--wait-lock", "30m")  # 3 s of real time
        try:
            out, err = read_rest(waiting, timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
    finally:
        holder.release()
    assert waiting.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["info", "build.skipped"]
    assert "waiting up to 30m for the family lock" in events[0]["message"]
    assert events[1]["reason"].endswith("20261126t000000-aaaaaa) after waiting 30m; skipping "
                                        "(a longer --wait-lock waits longer)")
    assert cron.leftovers() == []


def test_ctrl_c_while_waiting_for_the_lock_exits_130(cron: Cron) -> None:
    def says_it_waits(seen: list[Event]) -> None:
        assert "1h" in seen[-1]["message"] and "20261126t000000-aaaaaa" in seen[-1]["message"]

    spec = cron.spec()
    holder = LocalLock(cron.store.locks_dir, cron.sim.cloud_name, "ws2022-standard")
    holder.acquire(build_id="20261126t000000-aaaaaa")
    try:
        waiting = cron.start(spec, "--wait-lock", "1h")
        # Connected, checked credentials, now waiting on the held lock (and saying so).
        events, err = interrupt_when(
            waiting, lambda e: e["event"] == "info" and "for the family lock" in e["message"],
            exit_timeout=60, before_signal=says_it_waits)
    finally:
        holder.release()
    assert waiting.returncode == 130, err
    assert not [e for e in events if e["event"] == "build.skipped"]
    [failed] = [e for e in events if e["event"] == "build.failed"]
    assert "interrupted by SIGINT" in failed["reason"]
    assert "waiting" in failed["reason"]
    assert cron.leftovers() == []


def test_the_next_run_after_a_killed_build_says_resume_not_another_host(cron: Cron) -> None:
    # A host reboot or an OOM kill mid-build: the builder goes on in the cloud with a fresh
    # heartbeat, and the next cron run skipped with "already being built from another
    # host", though the build is this host's own and `osbuild resume` would finish it.
    spec = cron.spec()
    proc = cron.start(spec)
    events, _ = interrupt_when(proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe",
                               signal.SIGKILL, exit_timeout=30)
    build_id = events[0]["build_id"]
    state = cron.store.load(build_id)
    run = cron.build(spec)
    assert run.exit_code == 0, run.why
    [skipped] = run.named("build.skipped")
    assert skipped["reason"] == (
        f"build {build_id} of this host is still in the cloud, but its osbuild (pid "
        f"{state.pid}) is gone: osbuild resume {build_id}, or osbuild gc --older-than 0 "
        "to start over; skipping")
    assert cron.gc() == 0
    assert cron.leftovers() == []
