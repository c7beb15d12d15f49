"""SIGKILL the orchestrator mid-build; `osbuild resume` finishes, or `osbuild gc` clears up."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.images.family import list_family
from osbuild.unattended.state import BuildStatus
from tests.cron.conftest import Cron, read_until
from tests.support.cliprocess import interrupt_when

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

Event = dict[str, Any]


def _volume_created(e: Event) -> bool:
    return e["event"] == "resource.created" and e["kind"] == "volume"


def _watching(e: Event) -> bool:
    return e["event"] == "stage" and e["stage"] == "winpe" and e["status"] == "start"


def _capturing(e: Event) -> bool:
    return (e["event"] == "resource.created" and e["kind"] == "image"
            and e["name"].endswith("-image"))


def _verifying(e: Event) -> bool:
    # The test server's keypair: the state says "verify" by then (step.started comes first).
    return e["event"] == "resource.created" and e["name"].endswith("-verify")


KILL_POINTS: dict[str, Callable[[Event], bool]] = {
    "volumes": _volume_created,
    "install": _watching,
    "capture": _capturing,
    "verify": _verifying,  # published: the dead run had given the image its properties
}


def kill_at(cron: Cron, point: Callable[[Event], bool], **spec: Any) -> str:
    """Start a build, SIGKILL it when ``point`` matches; the build id."""
    proc = cron.start(cron.spec(**spec))
    events, _ = interrupt_when(proc, point, signal.SIGKILL, exit_timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return str(events[0]["build_id"])


@pytest.mark.parametrize("where", list(KILL_POINTS))
def test_resume_after_sigkill_finishes_the_build(cron: Cron, where: str) -> None:
    build_id = kill_at(cron, KILL_POINTS[where])
    state = cron.store.load(build_id)
    assert state.status is BuildStatus.RUNNING and state.step == where
    assert cron.leftovers(), "the killed build left nothing to resume"

    run = cron.resume(build_id)
    assert run.exit_code == 0, run.why
    done = run.success
    assert done["build_id"] == build_id and done["promoted"] is True
    assert run.named("build.resumed")
    image = cron.sim.connect().image.get(f"/images/{done['image_id']}").json()
    assert image["osbuild_build_id"] == build_id
    assert "osbuild-current" in image["tags"]
    assert cron.leftovers(keep={done["image_id"]}) == []
    assert cron.store.load(build_id).status is BuildStatus.SUCCEEDED
    # Only one image came out of the build, however far the dead run had got.
    images = [i for i in cron.sim.resources()["images"] if not i.get("seeded")]
    assert [i["id"] for i in images] == [done["image_id"]]
    report = json.loads((cron.cloud.log_dir / build_id / "report.json").read_text())
    assert report["result"] == "succeeded" and report["promotion"]["promoted"] is True
    assert report["verify"] == "passed" and len(report["fingerprint"]) == 64
    # The published image as the build made it, however far the dead run had got: a resume
    # past publish once reported an image with no size, provenance or generation.
    assert done["kind"] == "full" and done["generation"] == 0
    assert report["image"]["size"] == int(image["osbuild_image_size"])
    assert report["image"]["properties"]["osbuild_build_id"] == build_id


@pytest.mark.parametrize("where", list(KILL_POINTS))
def test_gc_after_sigkill_removes_everything(cron: Cron, where: str) -> None:
    build_id = kill_at(cron, KILL_POINTS[where])
    assert cron.leftovers()
    assert cron.gc() == 0
    assert cron.leftovers() == []
    state = cron.store.load(build_id)
    assert state.status is BuildStatus.FAILED and "gc" in (state.error or "")
    # Nothing left to resume: resume says so instead of building.
    assert cron.resume(build_id).exit_code == 2


def test_gc_at_its_default_age_leaves_a_killed_build_resumable(cron: Cron) -> None:
    # An operator's hourly `osbuild gc` (default --older-than 6h) right after a kill: the
    # build's resources are minutes old, so none goes (once it took the builder's port,
    # which the simulated Neutron had dated a year back), and resume still finishes it.
    build_id = kill_at(cron, _watching)
    before = cron.leftovers()
    cron.cloud.capsys.readouterr()
    code = main(["gc", "--os-cloud", cron.sim.cloud_name, "--state-dir", str(cron.state_dir)])
    out = cron.cloud.capsys.readouterr().out
    assert code == 0, out
    # One line for the dead build gc leaves for resume, then the summary.
    kept, summary = out.splitlines()
    assert kept.startswith(f"kept dead build {build_id}'s "), out
    assert " for resume (newest " in kept and summary.startswith("0 removed, "), out
    assert cron.leftovers() == before
    assert cron.store.load(build_id).status is BuildStatus.RUNNING
    run = cron.resume(build_id)
    assert run.exit_code == 0, run.why
    assert cron.leftovers(keep={run.success["image_id"]}) == []


def _wait_shutoff(cron: Cron, server_id: str) -> None:
    conn = cron.sim.connect()
    for _ in range(600):
        if conn.compute.get_server(server_id).status == "SHUTOFF":
            return
        time.sleep(0.1)
    raise AssertionError("the builder never powered off")


def test_builder_that_powered_off_after_sysprep_unwatched_is_captured(cron: Cron) -> None:
    build_id = kill_at(cron, lambda e: e["event"] == "stage" and e["stage"] == "sysprep")
    state = cron.store.load(build_id)
    assert state.records["install"]["sysprep_reached"]
    _wait_shutoff(cron, state.resources["server:builder"])
    run = cron.resume(build_id)
    assert run.exit_code == 0, run.why
    assert cron.leftovers(keep={run.success["image_id"]}) == []


def test_builder_that_finished_unwatched_is_captured_on_its_metadata_acknowledgement(
        cron: Cron) -> None:
    # The orchestrator dies before sysprep:start; the guest goes on, generalizes and powers
    # off, and its console is gone (404, as real Nova's default pty console). What the guest
    # posted to the metadata service (os-server-password) tells resume that sysprep finished.
    build_id = kill_at(cron, lambda e: e["event"] == "stage" and e["stage"] == "updates")
    state = cron.store.load(build_id)
    assert not state.records["install"]["sysprep_reached"]
    server_id = state.resources["server:builder"]
    _wait_shutoff(cron, server_id)
    with pytest.raises(Exception, match="404"):
        cron.sim.connect().compute.get_server_console_output(server_id)
    run = cron.resume(build_id)
    assert run.exit_code == 0, run.why
    [acked] = [e for e in run.named("stage") if e["stage"] == "sysprep"]
    assert acked["status"] == "ok" and "os-server-password" in acked["detail"], acked
    assert cron.leftovers(keep={run.success["image_id"]}) == []


def test_builder_off_before_sysprep_fails_cleanly(cron: Cron) -> None:
    build_id = kill_at(cron, _watching)
    state = cron.store.load(build_id)
    assert state.records["install"]["last_stage"] == "winpe"
    server_id = state.resources["server:builder"]
    cron.sim.connect().compute.stop_server(server_id)
    _wait_shutoff(cron, server_id)
    run = cron.resume(build_id)
    assert run.exit_code == 1
    assert "powered off before sysprep" in run.failure["reason"]
    # The stage the dead run had recorded, not "boot" (where a fresh watcher starts).
    assert run.failure["stage"] == "winpe", run.failure
    assert "last stage: winpe" in run.failure["reason"]
    assert cron.leftovers() == []
    assert cron.store.load(build_id).status is BuildStatus.FAILED


def test_resume_refuses_a_finished_build(cron: Cron) -> None:
    run = cron.build(cron.spec())
    assert run.exit_code == 0, run.why
    again = cron.resume(run.success["build_id"])
    assert again.exit_code == 2
    assert "already succeeded" in again.stderr


def test_resume_after_a_spec_edit_explains_force_and_gc(cron: Cron) -> None:
    build_id = kill_at(cron, _watching)
    spec_path = cron.store.load(build_id).spec_path
    with open(spec_path, encoding="utf-8") as f:
        text = f.read()
    with open(spec_path, "w", encoding="utf-8") as f:
        f.write(text.replace("keep: 3", "keep: 4"))

    refused = cron.resume(build_id)
    assert refused.exit_code == 2
    lines = [line.removeprefix("osbuild: error: ") for line in refused.stderr.splitlines()]
    assert lines[0].startswith(f"{spec_path} changed since build {build_id} started")
    assert f"  finish it with the spec as it is now: osbuild resume {build_id} --force" in lines
    assert any("osbuild gc --older-than 0" in line for line in lines)

    forced = cron.resume(build_id, "--force")
    assert forced.exit_code == 0, forced.why
    assert cron.leftovers(keep={forced.success["image_id"]}) == []


def test_a_comment_only_edit_does_not_stop_resume(cron: Cron) -> None:
    build_id = kill_at(cron, _watching)
    spec_path = cron.store.load(build_id).spec_path
    with open(spec_path, "a", encoding="utf-8") as f:
        f.write("# reviewed by the on-call operator\n")
    run = cron.resume(build_id)
    assert run.exit_code == 0, run.why


def kill_with_a_stale_claim(cron: Cron, point: Callable[[Event], bool] = _verifying
                            ) -> tuple[str, Any]:
    """Host A's osbuild killed at ``point``, its claim's heartbeat aged past STALE_AFTER (as
    five minutes would): its build id and claim image."""
    from datetime import UTC, datetime, timedelta

    from osbuild.unattended import lock

    first = kill_at(cron, point)
    conn = cron.sim.connect()
    [claim] = [i for i in lock.claims(conn) if first in i.name]
    lock.send_claim_heartbeat(conn, claim.id,
                              now=datetime.now(UTC) - timedelta(seconds=lock.STALE_AFTER + 60))
    return first, claim


def test_a_resumed_build_does_not_take_the_family_back_to_its_older_image(
        cron: Cron, tmp_path: Any) -> None:
    # Host A's osbuild dies in verify; its claim goes stale (5 minutes: aged here) and host
    # B builds and promotes the family. Resuming A then promoted A's image, which started
    # first, over B's newer one, with exit 0 (found from outside, session 28).
    spec = cron.spec()
    first, claim = kill_with_a_stale_claim(cron)
    conn = cron.sim.connect()
    newer = cron.cloud.build(spec, extra=("--state-dir", str(tmp_path / "host-b")))
    assert newer.exit_code == 0, newer.why
    newer_image = newer.success["image_id"]
    # Host B said whose stale claim it went past, and what becomes of what that build left
    # (it went on without a word).
    [dead] = [e["message"] for e in newer.named("warning") if "looks dead" in e["message"]]
    assert dead.startswith(f"build {first} of ws2022-standard looks dead: build {first} "
                           f"(claim image osbuild-{first}-claim, {claim.id}) sent its last "
                           "heartbeat at "), dead
    assert dead.endswith(f"over 5m ago; going on without it. What it left stays until "
                         f"`osbuild resume {first}` on its host or `osbuild gc`")

    run = cron.resume(first)
    assert run.exit_code == 1
    assert (f"of build {newer.success['build_id']}, which started after this one, became "
            "the current image of ws2022-standard") in run.why
    assert "osbuild images promote" in run.why
    family = {i.id: i for i in list_family(conn, "ws2022-standard", with_usage=False)}
    assert family[newer_image].current
    [older] = [i for i in family.values() if i.build_id == first]
    assert not older.current and older.hidden and older.verified  # kept for images promote
    assert cron.leftovers(keep={newer_image, older.id}) == []


def test_a_build_whose_resources_another_host_removed_fails_its_resume_cleanly(
        cron: Cron, tmp_path: Any) -> None:
    # Host A's osbuild dies in verify; its claim goes stale and host B's `gc --older-than 0`
    # removes everything A left. Resuming A then died on a raw "No Image found" with no
    # build.failed, its state left running and its media on disk; A's gc found nothing to
    # do and status kept offering resume or gc (found from outside, session 28).
    first, _ = kill_with_a_stale_claim(cron)
    cron.cloud.capsys.readouterr()
    assert main(["gc", "--older-than", "0", "--os-cloud", cron.sim.cloud_name,
                 "--state-dir", str(tmp_path / "host-b")]) == 0
    assert cron.leftovers() == []
    media = cron.cloud.log_dir / first / "media"
    assert media.exists()

    run = cron.resume(first)
    assert run.exit_code == 1
    assert run.why.startswith("resume: nothing it left is in the cloud any more (image "
                              f"osbuild-{first}-claim ("), run.why
    assert ("), deleted outside this build: by another host's `osbuild gc` once this build's "
            "heartbeat had gone stale, or by hand; nothing to resume, the build is marked "
            "failed") in run.why
    [failed] = run.named("build.failed")
    assert failed["stage"] == "resume" and failed["leftovers"] == []
    state = cron.store.load(first)
    assert state.status is BuildStatus.FAILED
    assert not media.exists()  # the answer file, with the build's password
    assert cron.leftovers() == []


def test_gc_on_the_dead_builds_host_retires_it_once_another_host_removed_its_resources(
        cron: Cron, tmp_path: Any, capsys: Any) -> None:
    # As above; the owning host's gc found nothing to remove, so it left the state running
    # and the answer file (with the build's password) on disk for good.
    first, _ = kill_with_a_stale_claim(cron, _volume_created)
    assert main(["gc", "--older-than", "0", "--os-cloud", cron.sim.cloud_name,
                 "--state-dir", str(tmp_path / "host-b")]) == 0
    media = cron.cloud.log_dir / first / "media"
    assert media.exists() and cron.store.load(first).status is BuildStatus.RUNNING
    last_heard = cron.store.load(first).updated_at
    # The same dead build in another cloud: nothing of it is in this one, and that is not
    # this cloud's gc's business.
    elsewhere = first[:-6] + "e15e00"
    doc = json.loads(cron.store.path_for(first).read_text())
    cron.store.path_for(elsewhere).write_text(
        json.dumps({**doc, "build_id": elsewhere, "cloud": "another-cloud"}))
    capsys.readouterr()
    assert main(["gc", "--older-than", "0", "--os-cloud", cron.sim.cloud_name,
                 "--state-dir", str(cron.state_dir)]) == 0
    out = capsys.readouterr().out
    assert f"marked dead build {first} failed: nothing of it is left to resume" in out
    state = cron.store.load(first)
    assert state.status is BuildStatus.FAILED and "nothing of it was left" in (state.error or "")
    assert state.updated_at == last_heard  # its end: its last sign of life, not gc's visit
    assert not media.exists()
    assert cron.store.load(elsewhere).status is BuildStatus.RUNNING


def test_resume_waits_with_wait_lock_for_another_hosts_build_then_keeps_its_older_image(
        cron: Cron, tmp_path: Any) -> None:
    # Resume's skip message offered --wait-lock, which resume did not have (found from
    # outside, session 28). Host B builds while A's resume waits; A then finishes its boot
    # test and leaves its image hidden (B's, started later, is current).
    spec = cron.spec()
    first, _ = kill_with_a_stale_claim(cron)
    conn = cron.sim.connect()
    other = cron.start(spec, "--state-dir", str(tmp_path / "host-b"))
    try:
        read_until(other, lambda e: e["event"] == "resource.created"
                   and str(e["name"]).endswith("-claim"))
        skipped = cron.resume(first)
        [skip] = skipped.named("build.skipped")
        assert skipped.exit_code == 0 and "(use --wait-lock to wait)" in str(skip["reason"])
        run = cron.resume(first, "--wait-lock", "6h")
        assert other.wait(timeout=120) == 0
    finally:
        if other.poll() is None:
            other.kill()
        other.communicate()
    [waiting] = [e for e in run.named("info") if "waiting up to 6h for build" in str(e["message"])]
    assert str(waiting["message"]).endswith(") to finish"), waiting
    assert run.exit_code == 1 and "which started after this one" in run.why
    family = list_family(conn, "ws2022-standard", with_usage=False)
    assert [i.build_id for i in family if i.current] != [first]
