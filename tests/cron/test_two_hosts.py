"""Two hosts (each its own state directory, so its own local lock) start the same family at
the same moment: both pass the cloud guard before either has a builder, both boot one, and
the lock check after booting lets the build whose builder Nova created first go on. The
other backs out as a skip (exit 0), leaving nothing; one image is built and current."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osbuild.images.family import list_family
from tests.cron.conftest import Cron, read_until
from tests.e2e.conftest import sim_cloud

pytestmark = pytest.mark.slow

# The cloud runs 120 times faster than real time (not the e2e suite's 600): a builder then
# lives about 10 real seconds, so the other host's lock check, after a create held HOLD
# real seconds, finds it still there. (At 600 the first builder's install was over within
# the hold, and nothing marks a build once its builder is gone.)
SPEED = 120.0
HOLD = 5.0


@pytest.fixture
def cron(tmp_path: Path, capsys: Any) -> Iterator[Cron]:
    with sim_cloud(tmp_path, capsys, speed=SPEED) as cloud:
        yield Cron(cloud, tmp_path / "state")


def _finish(proc: subprocess.Popen[str], seen: list[dict[str, object]]
            ) -> tuple[int, list[dict[str, object]], str]:
    out, err = proc.communicate(timeout=600)
    events = [*seen, *(json.loads(line) for line in out.splitlines() if line.startswith("{"))]
    return proc.returncode, events, err


def _named(events: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in events if e["event"] == name]


def test_two_hosts_starting_at_once_build_the_family_once(cron: Cron) -> None:
    spec = cron.spec()
    host_b = Cron(cron.cloud, cron.state_dir.parent / "host-b")
    # Host A's builder create is held HOLD real seconds before Nova sees it, so host B,
    # started meanwhile, finds no builder at its cloud guard (the race the lock check is
    # for), and most likely creates its own builder first.
    cron.sim.faults.add_rule(service="compute", method="POST", path="/servers$",
                             latency=HOLD, times=1)
    first = cron.start(spec)
    seen_a = read_until(first, lambda e: e["event"] == "step.started" and e["step"] == "boot")
    second = host_b.start(spec)
    code_a, events_a, err_a = _finish(first, seen_a)
    code_b, events_b, err_b = _finish(second, [])
    assert (code_a, code_b) == (0, 0), (err_a, err_b)

    # The build whose builder Nova created first goes on, whichever host started first (here
    # most likely host B, whose create was not held). By build id, B (the later id) yielded
    # to A, which had no builder yet when B looked, and A went on too: both built.
    winners = [events for events in (events_a, events_b) if _named(events, "build.succeeded")]
    assert len(winners) == 1, (events_a, events_b)
    [winner_events] = winners
    [loser_events] = [events for events in (events_a, events_b) if events is not winner_events]
    winner, loser = str(winner_events[0]["build_id"]), str(loser_events[0]["build_id"])
    runs = {winner: winner_events, loser: loser_events}
    # Both got past the guard and booted a builder: the lock check decided, not the guard.
    for events in runs.values():
        assert [e for e in _named(events, "step.finished") if e["step"] == "boot"], events
    [done] = _named(runs[winner], "build.succeeded")
    assert done["promoted"] is True
    assert not _named(runs[loser], "build.succeeded")
    [skipped] = _named(runs[loser], "build.skipped")
    assert str(skipped["reason"]).startswith(f"already being built by build {winner} ")
    assert str(skipped["reason"]).endswith("whose builder was created first; skipping")
    # The loser's builder and volumes went at once, not at the end of the winner's build.
    assert {e["kind"] for e in _named(runs[loser], "resource.deleted")} >= {"server", "volume"}

    images = list_family(cron.sim.connect(), "ws2022-standard", with_usage=False)
    assert [i.id for i in images if i.current] == [done["image_id"]]
    assert len(images) == 1
    assert cron.leftovers(keep={str(done["image_id"])}) == []


def test_with_wait_lock_the_build_that_backed_out_builds_after_the_other(cron: Cron) -> None:
    # --wait-lock promises to wait for the other run instead of skipping: a build that backs
    # out at the lock check starts again and waits at the cloud guard for the other builder.
    spec = cron.spec()
    host_b = Cron(cron.cloud, cron.state_dir.parent / "host-b")
    cron.sim.faults.add_rule(service="compute", method="POST", path="/servers$",
                             latency=HOLD, times=1)
    first = cron.start(spec, "--wait-lock", "6h")
    seen_a = read_until(first, lambda e: e["event"] == "step.started" and e["step"] == "boot")
    second = host_b.start(spec)
    code_a, events_a, err_a = _finish(first, seen_a)
    code_b, events_b, err_b = _finish(second, [])
    assert (code_a, code_b) == (0, 0), (err_a, err_b)

    [done_b] = _named(events_b, "build.succeeded")
    [backed_out] = _named(events_a, "build.skipped")
    assert str(backed_out["reason"]).startswith(f"already being built by build "
                                                f"{done_b['build_id']} ")
    [again] = [e for e in _named(events_a, "info") if "backed out at the lock check" in
               str(e["message"])]
    assert again["build_id"] == backed_out["build_id"]
    assert f"for build {done_b['build_id']}; --wait-lock: waiting up to" in str(again["message"])
    [done_a] = _named(events_a, "build.succeeded")
    assert done_a["build_id"] != backed_out["build_id"]  # a new build, not the one that yielded
    # It started again behind host B's builder (waiting at the guard while that still
    # ran), so B's image was promoted first and A's is the current one.
    images = list_family(cron.sim.connect(), "ws2022-standard", with_usage=False)
    assert [i.id for i in images if i.current] == [done_a["image_id"]]
    assert cron.leftovers(keep={str(done_a["image_id"]), str(done_b["image_id"])}) == []
