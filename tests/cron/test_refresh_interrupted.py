"""An interrupted refresh: SIGINT cleans up and the parent stays current; after SIGKILL
`osbuild resume` finishes it as a refresh, or `osbuild gc` clears what it left."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from osbuild import naming
from osbuild.images.family import list_family
from osbuild.images.manage import rollback
from osbuild.pipeline.run import PARENT_RECORD
from osbuild.unattended.state import BuildStatus
from tests.cron.conftest import Cron
from tests.support.cliprocess import interrupt_when

pytestmark = pytest.mark.slow


def _updating(e: dict[str, object]) -> bool:
    return e["event"] == "stage" and e["stage"] == "updates" and e["status"] == "start"


def _interrupted_refresh(cron: Cron, sig: signal.Signals) -> tuple[str, str, int]:
    """A full build, then a refresh sent ``sig`` during its updates: parent, build id, exit."""
    spec = cron.spec()
    full = cron.build(spec)
    assert full.exit_code == 0, full.why
    proc = cron.start(spec, "--refresh", "always")
    events, _ = interrupt_when(proc, _updating, sig)
    assert events[0]["kind"] == "refresh"
    return full.success["image_id"], str(events[0]["build_id"]), proc.returncode


def _killed_refresh(cron: Cron) -> tuple[str, str]:
    parent, build_id, code = _interrupted_refresh(cron, signal.SIGKILL)
    assert code == -signal.SIGKILL
    return parent, build_id


def _current(cron: Cron) -> str:
    return next(i.id for i in list_family(cron.sim.connect(), "ws2022-standard",
                                          with_usage=False) if i.current)


def test_resume_finishes_a_refresh_as_a_refresh(cron: Cron) -> None:
    parent, build_id = _killed_refresh(cron)
    state = cron.store.load(build_id)
    assert state.records[PARENT_RECORD]["image_id"] == parent
    assert state.step == "install"

    run = cron.resume(build_id)
    assert run.exit_code == 0, run.why
    started = run.named("build.resumed")[-1]
    assert started["kind"] == "refresh" and started["parent_image_id"] == parent
    assert started["reason"] and started["reason"] == state.records["kind"]["reason"]
    image_id = run.success["image_id"]
    image = cron.sim.connect().image.get(f"/images/{image_id}").json()
    assert image[naming.PROP_BUILD_KIND] == "refresh" and image[naming.PROP_PARENT] == parent
    assert _current(cron) == image_id
    assert cron.leftovers(keep={parent, image_id}) == []


def test_gc_removes_a_dead_refresh_and_the_parent_stays_current(cron: Cron) -> None:
    parent, build_id = _killed_refresh(cron)
    assert cron.leftovers(keep={parent})
    assert cron.gc() == 0
    assert cron.leftovers(keep={parent}) == []
    assert _current(cron) == parent
    assert cron.store.load(build_id).status is BuildStatus.FAILED


def test_sigint_during_a_refresh_cleans_up_and_the_parent_stays_current(cron: Cron) -> None:
    parent, build_id, code = _interrupted_refresh(cron, signal.SIGINT)
    assert code == 130
    assert cron.leftovers(keep={parent}) == []
    assert _current(cron) == parent
    assert cron.store.load(build_id).status is BuildStatus.INTERRUPTED


def test_resume_keeps_why_auto_chose_a_full_build(cron: Cron) -> None:
    # `--refresh auto` built in full (here: no current image yet); the resumed build says
    # why in its build.resumed event and report, as the refresh's resume does.
    proc = cron.start(cron.spec(), "--refresh", "auto")
    events, _ = interrupt_when(proc, _updating, signal.SIGKILL)
    started = events[0]
    assert started["kind"] == "full" and "has no current image" in started["reason"]
    run = cron.resume(str(started["build_id"]))
    assert run.exit_code == 0, run.why
    resumed = run.named("build.resumed")[-1]
    assert resumed["kind"] == "full" and resumed["reason"] == started["reason"]
    report = json.loads(Path(run.success["report"]).read_text())
    assert report["kind"]["kind"] == "full" and report["kind"]["reason"] == started["reason"]


def test_resume_warns_at_once_when_the_refreshs_parent_is_no_longer_current(
        cron: Cron) -> None:
    # Rolled back while the refresh's osbuild was dead: the resume ran install, capture and
    # the boot test, and only at promotion said the parent had moved (outside, session 30).
    first = cron.build(cron.spec())
    assert first.exit_code == 0, first.why
    parent, build_id = _killed_refresh(cron)
    conn = cron.sim.connect()
    rollback(conn, "ws2022-standard")  # `osbuild images rollback`: the first image again
    now_current = first.success["image_id"]
    assert _current(cron) == now_current
    run = cron.resume(build_id)
    assert run.exit_code == 1
    warnings = [e["message"] for e in run.named("warning")]
    warned = next(i for i, e in enumerate(run.events) if e["event"] == "warning")
    assert warned < next(i for i, e in enumerate(run.events) if e["event"] == "step.started")
    assert any("the refresh's parent " in w and f"({parent}) is no longer the current image"
               in w and f"({now_current})" in w for w in warnings), warnings
    assert _current(cron) == now_current
