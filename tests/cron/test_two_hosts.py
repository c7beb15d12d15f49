"""Two hosts (each its own state directory, so its own local lock) start the same family at
the same moment: both pass the cloud guard before either has a builder, both boot one, and
the lock check after booting lets the build whose builder Nova created first go on. The
other backs out as a skip (exit 0), leaving nothing; one image is built and current."""

from __future__ import annotations

import json
import subprocess

import pytest

from osbuild.images.family import list_family
from tests.cron.conftest import Cron, read_until

pytestmark = pytest.mark.slow


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
    # Host A's builder create is held 4 real seconds before Nova sees it, so host B, started
    # meanwhile, finds no builder at its cloud guard: the race the lock check is for.
    cron.sim.faults.add_rule(service="compute", method="POST", path="/servers$",
                             latency=4.0, times=1)
    first = cron.start(spec)
    seen_a = read_until(first, lambda e: e["event"] == "step.started" and e["step"] == "boot")
    second = host_b.start(spec)
    code_a, events_a, err_a = _finish(first, seen_a)
    code_b, events_b, err_b = _finish(second, [])
    assert (code_a, code_b) == (0, 0), (err_a, err_b)

    # Host A started first, but host B's builder was created first (A's create was held):
    # B goes on. By build id, B (the later) yielded to A, which had no builder yet when B
    # looked, and A went on too: both built the family.
    winner, loser = str(events_b[0]["build_id"]), str(events_a[0]["build_id"])
    runs = {winner: events_b, loser: events_a}
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
