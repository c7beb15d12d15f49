"""A run of several builds: all of them preflighted before the first starts, and one exit code.

`osbuild build` runs as a subprocess against the simulated cloud, as cron runs it.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from osbuild_sim.media import windows_iso
from tests.cron.conftest import Cron
from tests.support.cliprocess import interrupt_when, read_rest, read_until
from tests.support.webhook import WebhookReceiver
from tests.unattended import helpers


def _start(cron: Cron, *specs: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cron.cloud.clouds_yaml)}
    return subprocess.Popen(
        [sys.executable, "-m", "osbuild", "build", *map(str, specs), "--os-cloud",
         cron.sim.cloud_name, "--log-dir", str(cron.cloud.log_dir), "--state-dir",
         str(cron.state_dir), "--json", "--parallel", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _assert_each_notice_joins_a_failed_build(events: list[dict[str, Any]],
                                             posted: dict[str, dict[str, Any]]) -> None:
    failed = {e["build_id"]: e for e in events if e["event"] == "build.failed"}
    sent = [e["build_id"] for e in events if e["event"] == "notify.sent"]
    assert sorted(sent) == sorted(failed) == sorted(b["build_id"] for b in posted.values())
    assert [e["event"] for e in events if e["event"] not in ("build.failed", "notify.sent")
            ] == [], events
    for body in posted.values():
        event = failed[body["build_id"]]
        assert (event["family"], event["cloud"], event["exit_code"], event["reason"]) == (
            body["family"], body["cloud"], 2, body["reason"])
        # The keys every build.failed has (README), none chosen.
        assert (event["kind"], event["parent_image_id"], event["generation"]) == (
            None, None, None)


def test_a_bad_later_spec_refuses_the_run_before_anything_is_created(cron: Cron) -> None:
    # With --parallel 1 the second build's own preflight ran only after the first build had
    # finished: an hour of building, then exit 2 for a spec that could never build.
    good = cron.spec(name="family-a")
    bad = cron.spec(name="family-b", builder={"flavor": "m1.missing"})
    proc = _start(cron, good, bad)
    out, err = read_rest(proc, timeout=120)
    assert proc.returncode == 2, err
    events = _events(out)
    assert not [e for e in events if e["event"] in ("build.started", "resource.created")]
    assert "osbuild: error: family-b: builder.flavor: no flavor 'm1.missing'" in err
    assert "family-a:" not in err  # only the bad spec is named
    assert cron.leftovers() == [] and cron.states() == []


def test_a_refused_run_is_a_failure_in_the_metrics_and_webhooks(cron: Cron,
                                                                  tmp_path: Path) -> None:
    # Cron ignores exit codes; its alerts read the metrics file and the webhook. A refused
    # run of several builds recorded neither, while one build refused alone records both:
    # a weekly run broken by one bad spec went unnoticed until the staleness alert.
    hook = WebhookReceiver()
    metrics = tmp_path / "osbuild.prom"
    try:
        notify = {"url": hook.url, "on": ["failure"]}
        good = cron.spec(name="family-a", notify=notify)
        bad = cron.spec(name="family-b", notify=notify, builder={"flavor": "m1.missing"})
        proc = _start(cron, good, bad, extra=("--metrics-file", str(metrics)))
        out, err = read_rest(proc, timeout=120)
    finally:
        hook.close()
    assert proc.returncode == 2, err
    posted = {body["family"]: body for body in hook.delivered}
    assert set(posted) == {"family-a", "family-b"}
    assert all(b["result"] == "failure" and b["exit_code"] == 2 for b in posted.values())
    # The run never chose between a refresh and a full build.
    assert [b["kind"] for b in posted.values()] == [None, None]
    _assert_each_notice_joins_a_failed_build(_events(out), posted)
    assert posted["family-b"]["reason"] == "builder.flavor: no flavor 'm1.missing'"
    assert posted["family-a"]["reason"].startswith("not built: the run of 2 builds was "
                                                   "refused by its preflight: family-b: ")
    samples = {(s.name, s.labels["family"], s.labels.get("result")): s.value
               for f in text_string_to_metric_families(metrics.read_text())
               for s in f.samples}
    for family in ("family-a", "family-b"):
        assert samples[("osbuild_last_build_result", family, None)] == 0
        assert samples[("osbuild_builds_total", family, "failure")] == 1
    assert cron.leftovers() == [] and cron.states() == []


def test_an_invalid_spec_in_the_run_is_a_failure_of_the_others_in_metrics_and_webhooks(
        cron: Cron, tmp_path: Path) -> None:
    # One typo in /etc/osbuild/builds/ stopped every family with no trace in the metrics
    # file or any webhook: the alert came with the staleness rule, 8 days on (s31).
    hook = WebhookReceiver()
    metrics = tmp_path / "osbuild.prom"
    broken = tmp_path / "zz-broken.yaml"
    broken.write_text("name: broken\nbuilder: {flavor: m1.large, disk_gb: abc}\n")
    try:
        good = cron.spec(name="family-a", notify={"url": hook.url, "on": ["failure"]})
        proc = _start(cron, good, broken, extra=("--metrics-file", str(metrics)))
        out, err = read_rest(proc, timeout=120)
    finally:
        hook.close()
    assert proc.returncode == 2, err
    assert f"osbuild: error: {broken}: line 2: builder.disk_gb: must be a whole number" in err
    [body] = hook.delivered
    assert body["family"] == "family-a" and body["result"] == "failure"
    assert body["reason"].startswith("not built: the run of 1 builds was refused by its "
                                     f"specs: {broken}: "), body["reason"]
    events = _events(out)
    assert [e["event"] for e in events] == ["build.failed", "notify.sent", "error"], events
    assert any("builder.disk_gb" in line for line in events[-1]["errors"])
    samples = {(s.name, s.labels.get("result")): s.value
               for f in text_string_to_metric_families(metrics.read_text())
               for s in f.samples if s.labels.get("family") == "family-a"}
    assert samples[("osbuild_builds_total", "failure")] == 1
    assert cron.leftovers() == [] and cron.states() == []


def test_every_bad_spec_of_the_run_is_named_at_once(cron: Cron) -> None:
    first = cron.spec(name="family-a", windows={"iso_image": "gone.iso"})
    second = cron.spec(name="family-b", builder={"network": "nowhere"})
    proc = _start(cron, first, second)
    _out, err = read_rest(proc, timeout=120)
    assert proc.returncode == 2, err
    assert "family-a: windows.iso_image: no image 'gone.iso' in Glance" in err
    assert "family-b: builder.network: no network 'nowhere'" in err
    assert cron.leftovers() == []


def _run_with_a_later_build_refused(cron: Cron, first: Path) -> tuple[int, str, list[dict]]:
    """``first``, then a build whose Windows ISO is deleted from Glance while ``first``
    builds: the run's preflight passed it, its own preflight at its start refuses it (2)."""
    iso = cron.cloud.upload_iso("ws2022-later.iso", windows_iso("2022"))
    later = cron.spec(name="family-later", windows={"iso_image": "ws2022-later.iso"})
    proc = _start(cron, first, later)
    try:
        read_until(proc, lambda e: e["event"] == "step.finished" and e.get("step") == "preflight")
        cron.sim.connect().image.delete_image(iso)
        out, err = read_rest(proc, timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = _events(out)
    failed = {e["family"]: e for e in events if e["event"] == "build.failed"}
    assert failed["family-later"]["exit_code"] == 2, err
    assert "windows.iso_image: no image 'ws2022-later.iso'" in str(failed["family-later"])
    return proc.returncode, err, events


@pytest.mark.slow
def test_a_failed_build_outranks_a_later_refused_one(cron: Cron) -> None:
    # Exit 2 promises that nothing was created; the first build ran and failed (it was 2).
    cron.sim.faults.add_guest_scenario({"fail_stage": "virtio"}, name="builder$", times=1)
    code, err, events = _run_with_a_later_build_refused(cron, cron.spec(name="family-a"))
    assert [e["exit_code"] for e in events if e["event"] == "build.failed"] == [1, 2]
    assert code == 1, err


@pytest.mark.slow
def test_resources_left_behind_outrank_a_later_refused_build(cron: Cron) -> None:
    # Someone must delete what the first build left; exit 2 (the old answer) hid it.
    cron.sim.faults.add_rule(service="volume", method="DELETE", path="/volumes/", error=500)
    code, err, events = _run_with_a_later_build_refused(cron, cron.spec(name="family-a"))
    assert [e["exit_code"] for e in events if e["event"] == "build.failed"] == [3, 2]
    assert code == 3, err
    [first] = [e for e in events if e["event"] == "build.failed" and e["family"] == "family-a"]
    assert "cleanup incomplete; delete by hand:" in first["details"]


def test_a_build_still_waiting_for_its_turn_does_not_start_after_sigterm(cron: Cron) -> None:
    # systemctl stop during the first of two builds (--parallel 1): the second one started
    # anyway, to fail at once, with a build.started event, a state file, a report and a
    # 0 s build in `osbuild status`'s trend, for a build that never ran.
    first, second = cron.spec(name="family-a"), cron.spec(name="family-b")
    proc = _start(cron, first, second)
    events, err = interrupt_when(
        proc, lambda e: e["event"] == "step.started" and e.get("step") == "boot",
        signal.SIGTERM, timeout=120)
    assert proc.returncode == 130, err
    assert [e["family"] for e in events if e["event"] == "build.started"] == ["family-a"]
    failed = {e["family"]: e for e in events if e["event"] == "build.failed"}
    assert failed["family-a"]["reason"] == "interrupted by SIGTERM while running the boot step"
    assert failed["family-b"]["reason"] == "interrupted by SIGTERM while waiting for its turn"
    assert failed["family-b"]["exit_code"] == 130
    assert [s.family for s in cron.states()] == ["family-a"]
    assert cron.leftovers() == []


def _hold_lock(cron: Cron, family: str) -> subprocess.Popen[str]:
    """Another osbuild of this host building ``family``: a process holding its lock."""
    code = ("import time; from pathlib import Path; from osbuild.unattended.lock import LocalLock;"
            f"LocalLock(Path({str(cron.store.locks_dir)!r}), {cron.sim.cloud_name!r}, "
            f"{family!r}).acquire(build_id='20261126t000000-aaaaaa');"
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_builds_the_run_will_skip_as_busy_are_not_preflighted(cron: Cron) -> None:
    # Cron overlap: last week's run still builds both families. This run skips them both
    # (exit 0, README: a skip is not a failure), yet its preflight refused it (exit 2) for a
    # spec problem of a build that was never going to run.
    first = cron.spec(name="family-a", builder={"flavor": "m1.missing"})
    second = cron.spec(name="family-b")
    holders = [_hold_lock(cron, "family-a"), _hold_lock(cron, "family-b")]
    try:
        proc = _start(cron, first, second)
        out, err = read_rest(proc, timeout=120)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert proc.returncode == 0, err
    skipped = {e["family"]: e["reason"] for e in _events(out) if e["event"] == "build.skipped"}
    assert set(skipped) == {"family-a", "family-b"}
    assert all("already being built" in reason for reason in skipped.values())
    assert cron.leftovers() == []


def test_a_family_another_host_builds_is_not_preflighted(cron: Cron) -> None:
    # Two cron hosts share a cloud: the other one builds family-a now (its builder's
    # heartbeat is fresh). This run skips family-a (exit 0); its preflight refused the whole
    # run (exit 2) for family-a's bad flavor, and counted it against the quota.
    conn = cron.sim.connect()
    helpers.image(conn, helpers.BOOT_IMAGE)
    helpers.server(conn, "20261126t000000-bbbbbb", "family-a", datetime.now(UTC))
    proc = _start(cron, cron.spec(name="family-a", builder={"flavor": "m1.missing"}),
                  cron.spec(name="family-b", builder={"flavor": "m1.missing"}))
    out, err = read_rest(proc, timeout=120)
    # family-b alone is refused, before anything of it is created: the run stays exit 2.
    assert proc.returncode == 2, err
    assert "family-a" not in err and "family-b: builder.flavor" in err, err
    events = _events(out)
    assert not [e for e in events if e["event"] == "build.started"]


@pytest.mark.slow
def test_an_unchanged_build_does_not_count_against_the_runs_quota(cron: Cron) -> None:
    # etc/'s cron line: --if-changed --parallel 2. With room for one build at a time, the
    # run's preflight counted the unchanged family-a beside family-b and refused the run
    # (exit 2: "the 2 builds that run at once need 10 volumes"), though family-a skips.
    unchanged = cron.spec(name="family-a")
    assert cron.build(unchanged).exit_code == 0
    cron.sim.faults.set_quota("volume", volumes=8)
    proc = _start(cron, unchanged, cron.spec(name="family-b"),
                  extra=("--if-changed", "--parallel", "2"))
    out, err = read_rest(proc, timeout=300)
    assert proc.returncode == 0, err
    events = _events(out)
    assert [e["family"] for e in events if e["event"] == "build.skipped"] == ["family-a"]
    assert [e["family"] for e in events if e["event"] == "build.succeeded"] == ["family-b"]


def test_an_undelivered_webhook_is_one_warning_event_and_nothing_on_stderr(cron: Cron) -> None:
    # etc/'s crontab appends stdout and stderr of `--json` to one log of JSON lines; the
    # webhook's failure also went to stderr as a plain logging line, beside its event.
    hook = WebhookReceiver.refusing(1, status=404)
    try:
        spec = cron.spec(name="family-a", notify={"url": hook.url, "on": ["failure"]},
                         builder={"flavor": "m1.missing"})
        proc = _start(cron, spec)
        out, err = read_rest(proc, timeout=120)
    finally:
        hook.close()
    assert proc.returncode == 2 and hook.statuses == [404]
    assert err == ""
    [warning] = [e for e in _events(out) if e["event"] == "warning"]
    assert warning["message"] == "webhook not delivered after 1 attempt(s): HTTP 404"


@pytest.mark.slow
def test_a_failed_heartbeat_is_one_warning_event_in_json_with_stderr_merged(cron: Cron) -> None:
    # The crontab runs `--json >> log 2>&1`: a heartbeat the cloud refused printed
    # 'WARNING osbuild.unattended.lock: could not refresh ...' into that log of JSON lines.
    cron.sim.faults.add_rule(service="compute", method="POST", path="/servers/[^/]+/metadata$",
                             error=500, times=3)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cron.cloud.clouds_yaml)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "osbuild", "build", str(cron.spec(name="family-a")),
         "--os-cloud", cron.sim.cloud_name, "--log-dir", str(cron.cloud.log_dir),
         "--state-dir", str(cron.state_dir), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert [line for line in lines if not line.startswith("{")] == []
    events = [json.loads(line) for line in lines]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    # One warning for the run of failures, not one per poll.
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("could not refresh the builder heartbeat: ")


def _with_a_cloud_down(cron: Cron, tmp_path: Path, *, only: bool = False
                       ) -> tuple[Path, dict[str, Any]]:
    """A clouds.yaml with a cloud `down` (the simulator's entry, its Keystone at a port
    nothing listens on) beside the simulator's (``only``: alone), and that entry."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = yaml.safe_load(cron.cloud.clouds_yaml.read_text())
    down = copy.deepcopy(config["clouds"][cron.sim.cloud_name])
    down["auth"]["auth_url"] = f"http://127.0.0.1:{closed_port}/v3"
    config["clouds"] = {"down": down} if only else {**config["clouds"], "down": down}
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(yaml.safe_dump(config))
    return clouds_yaml, down


def test_a_signal_during_a_refused_runs_webhook_retries_stops_them(
        cron: Cron, tmp_path: Path) -> None:
    # SIGTERM while a refused run's webhooks waited to retry killed osbuild (exit 143): the
    # later build had no build.failed, webhook or metrics line; SIGINT went unheard for
    # every retry (an outside tryout, s31). Now the retries stop and every build is told.
    clouds_yaml, _down = _with_a_cloud_down(cron, tmp_path, only=True)
    hook = WebhookReceiver([(503, {"Retry-After": "30"})] * 8)
    metrics = tmp_path / "osbuild.prom"
    try:
        specs = [cron.spec(name=name, clouds=["down"],
                           notify={"url": hook.url, "on": ["failure"]})
                 for name in ("family-a", "family-b")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "osbuild", "build", *map(str, specs), "--state-dir",
             str(cron.state_dir), "--json", "--metrics-file", str(metrics)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)})
        deadline = time.monotonic() + 60
        while not hook.bodies:  # the first webhook has been answered 503
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)  # not the 30 s Retry-After, twice
    finally:
        hook.close()
    assert proc.returncode == 2, err  # the run was refused; nothing was created
    failed = [e for e in _events(out) if e["event"] == "build.failed"]
    assert sorted(e["family"] for e in failed) == ["family-a", "family-b"], out
    warned = [e["message"] for e in _events(out) if e["event"] == "warning"]
    assert len(warned) == 2 and all(w.startswith("webhook not delivered") for w in warned), \
        warned
    failures = {s.labels["family"]: s.value
                for f in text_string_to_metric_families(metrics.read_text())
                for s in f.samples
                if s.name == "osbuild_builds_total" and s.labels.get("result") == "failure"}
    assert failures == {"family-a": 1, "family-b": 1}


def test_a_cloud_that_does_not_answer_is_a_failure_in_the_metrics_and_webhooks(
        cron: Cron, tmp_path: Path) -> None:
    # The same for a run refused before its preflight, by a cloud that did not answer (a
    # Keystone down for the night): the weekly refresh did not happen and the alerts, which
    # read these, heard nothing of it (found in session 29).
    clouds_yaml, down = _with_a_cloud_down(cron, tmp_path)
    hook = WebhookReceiver()
    metrics = tmp_path / "osbuild.prom"
    try:
        spec = cron.spec(name="family-a", clouds=[cron.sim.cloud_name, "down"],
                         notify={"url": hook.url, "on": ["failure"]})
        proc = subprocess.Popen(
            [sys.executable, "-m", "osbuild", "build", str(spec), "--state-dir",
             str(cron.state_dir), "--log-dir", str(cron.cloud.log_dir), "--json",
             "--metrics-file", str(metrics)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)})
        out, err = read_rest(proc, timeout=120)
    finally:
        hook.close()
    assert proc.returncode == 2, err
    assert "osbuild: error: down: cannot reach the identity service" in err
    posted = {body["cloud"]: body for body in hook.delivered}
    assert set(posted) == {cron.sim.cloud_name, "down"}, hook.delivered
    assert all(b["result"] == "failure" and b["exit_code"] == 2 for b in posted.values())
    assert posted["down"]["reason"].startswith("down: cannot reach the identity service")
    assert posted[cron.sim.cloud_name]["reason"].startswith(
        "not built: the run of 2 builds was refused by its clouds: down: cannot reach")
    failures = {s.labels["cloud"]: s.value
                for f in text_string_to_metric_families(metrics.read_text())
                for s in f.samples
                if s.name == "osbuild_builds_total" and s.labels.get("result") == "failure"}
    assert failures == {cron.sim.cloud_name: 1, "down": 1}
    # stdout alone tells a log pipeline why nothing was built: a build.failed for each
    # build, the one every notify.sent names.
    _assert_each_notice_joins_a_failed_build(_events(out), posted)
    assert all(b["kind"] is None for b in posted.values())
    assert cron.leftovers() == [] and cron.states() == []
    assert down["auth"]["password"] not in out + err + metrics.read_text()
