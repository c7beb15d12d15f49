"""Two hosts (each its own state directory, so its own local lock) build the same family.

Started at the same moment, both pass the cloud guard before either has claimed the family;
both claim it, and the build whose claim Glance created first goes on. The other backs out
as a skip (exit 0) before creating anything else; one image is built and current. Started
later, while the first build captures or boot-tests its image (its builder is gone), the
second host finds the first build's claim and skips, and its gc leaves that build alone."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.images.family import list_family
from osbuild.unattended import lock
from tests.cron.conftest import Cron, read_until
from tests.e2e.conftest import sim_cloud

pytestmark = pytest.mark.slow

# The cloud runs 120 times faster than real time (not the e2e suite's 600): a build then
# lasts long enough in real seconds for the other host to start during any of its steps.
SPEED = 120.0
# Host A's claim create is held this long (real seconds) before Glance sees it: host B,
# started meanwhile, finds no claim at its cloud guard (the race the claim's contest is
# for) and claims the family first.
HOLD = 10.0
HOLD_VERIFY = 20.0


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


def _hold_first_claim(cron: Cron) -> None:
    cron.sim.faults.add_rule(service="image", method="POST", path="/v2/images$",
                             latency=HOLD, times=1)


def _created(events: list[dict[str, object]]) -> list[str]:
    """What the build created in the cloud (not its local rendered media)."""
    return [f"{e['kind']} {e['name']}" for e in _named(events, "resource.created")
            if e["kind"] != "local"]


def _deleted(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """What the build deleted in the cloud (not its local rendered media)."""
    return [e for e in _named(events, "resource.deleted") if e["kind"] != "local"]


def _time(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["time"]))


def test_two_hosts_starting_at_once_build_the_family_once(cron: Cron) -> None:
    spec = cron.spec()
    host_b = Cron(cron.cloud, cron.state_dir.parent / "host-b")
    _hold_first_claim(cron)
    first = cron.start(spec)
    seen_a = read_until(first, lambda e: e["event"] == "step.started" and e["step"] == "claim")
    second = host_b.start(spec)
    code_a, events_a, err_a = _finish(first, seen_a)
    code_b, events_b, err_b = _finish(second, [])
    assert (code_a, code_b) == (0, 0), (err_a, err_b)

    # Host B claimed first (A's claim was held): B goes on, although A started first.
    # (Their build ids may fall in the same second, in either order: the claims' creation
    # times, seconds apart, decide.)
    [done] = _named(events_b, "build.succeeded")
    assert done["promoted"] is True
    assert not _named(events_a, "build.succeeded")
    winner, loser = str(done["build_id"]), str(events_a[0]["build_id"])
    [skipped] = _named(events_a, "build.skipped")
    assert skipped["reason"] == (f"already being built by build {winner} (claim image "
                                 f"osbuild-{winner}-claim), which claimed the family first; "
                                 "skipping")
    # The loser created its claim and nothing else in the cloud, and deleted it.
    assert _created(events_a) == [f"image osbuild-{loser}-claim"]
    assert [e["name"] for e in _deleted(events_a)] == [f"osbuild-{loser}-claim"]
    # The winner's claim was its first resource and its last to go.
    assert _created(events_b)[0] == f"image osbuild-{winner}-claim"
    assert _deleted(events_b)[-1]["name"] == f"osbuild-{winner}-claim"

    images = list_family(cron.sim.connect(), "ws2022-standard", with_usage=False)
    assert [i.id for i in images if i.current] == [done["image_id"]]
    assert len(images) == 1
    assert cron.leftovers(keep={str(done["image_id"])}) == []


def test_with_wait_lock_the_build_that_backed_out_builds_after_the_other(cron: Cron) -> None:
    # --wait-lock promises to wait for the other run instead of skipping: a build that backs
    # out at its claim starts again and waits at the cloud guard for the whole other build.
    spec = cron.spec()
    host_b = Cron(cron.cloud, cron.state_dir.parent / "host-b")
    _hold_first_claim(cron)
    first = cron.start(spec, "--wait-lock", "6h")
    seen_a = read_until(first, lambda e: e["event"] == "step.started" and e["step"] == "claim")
    second = host_b.start(spec)
    code_a, events_a, err_a = _finish(first, seen_a)
    code_b, events_b, err_b = _finish(second, [])
    assert (code_a, code_b) == (0, 0), (err_a, err_b)

    [done_b] = _named(events_b, "build.succeeded")
    [backed_out] = _named(events_a, "build.skipped")
    assert str(backed_out["reason"]).startswith(f"already being built by build "
                                                f"{done_b['build_id']} ")
    [again] = [e for e in _named(events_a, "info") if "backed out" in str(e["message"])]
    assert again["build_id"] == backed_out["build_id"]
    assert str(again["message"]).startswith(
        f"backed out for build {done_b['build_id']}, which went first; --wait-lock: "
        "waiting up to ")
    [done_a] = _named(events_a, "build.succeeded")
    assert done_a["build_id"] != backed_out["build_id"]  # a new build, not the one that yielded
    # It waited at the guard for B's claim, which lasts B's whole build: A's new build
    # started after B had promoted its image and deleted its claim last (B's builder was
    # gone half an hour of cloud time before that, at capture).
    [started_a] = [e for e in _named(events_a, "build.started")
                   if e["build_id"] == done_a["build_id"]]
    [promoted_b] = [e for e in _named(events_b, "step.finished") if e["step"] == "promote"]
    claim_b = _deleted(events_b)[-1]
    assert claim_b["name"] == f"osbuild-{done_b['build_id']}-claim"
    assert _time(promoted_b) < _time(claim_b) < _time(started_a)
    images = list_family(cron.sim.connect(), "ws2022-standard", with_usage=False)
    assert [i.id for i in images if i.current] == [done_a["image_id"]]
    assert cron.leftovers(keep={str(done_a["image_id"]), str(done_b["image_id"])}) == []


def test_a_build_past_its_builder_still_holds_the_family(cron: Cron) -> None:
    # Host A's build is boot-testing its image: the builder is long gone. Host B's build
    # skips (it used to build the family again), and host B's gc, which knows nothing of
    # A's build, leaves A's resources alone.
    # The boot test's keypair import is held HOLD_VERIFY real seconds (2400 cloud seconds,
    # within the boot test's stage timeout set here): host B's status, build and gc all
    # happen while A is in its boot test, whatever the machine's pace.
    spec = cron.spec(builder={"stage_timeouts": {"verify": "6h"}})
    host_b = Cron(cron.cloud, cron.state_dir.parent / "host-b")
    cron.sim.faults.add_rule(service="compute", method="POST", path="/os-keypairs$",
                             latency=HOLD_VERIFY, times=1)
    first = cron.start(spec)
    seen_a = read_until(first, lambda e: e["event"] == "step.started" and e["step"] == "verify")
    build_a = str(seen_a[0]["build_id"])
    conn = cron.sim.connect()
    [holding] = lock.active_builders(conn, family="ws2022-standard")
    assert (holding.build_id, holding.server_id) == (build_a, "")  # its claim, no builder

    # Host B's status page shows the build, though host B knows nothing of it.
    host_b.cloud.capsys.readouterr()
    assert main(["status", "--json", "--state-dir", str(host_b.state_dir),
                 "--os-cloud", cron.sim.cloud_name]) == 0
    [row] = json.loads(host_b.cloud.capsys.readouterr().out)["families"]
    [elsewhere] = row["building_elsewhere"]
    assert (elsewhere["build_id"], elsewhere["builder"], elsewhere["server_id"],
            elsewhere["claim_id"]) == (build_a, None, None, holding.claim_id)

    second = host_b.start(spec)
    code_b, events_b, err_b = _finish(second, [])
    assert host_b.gc() == 0
    code_a, events_a, err_a = _finish(first, seen_a)
    assert (code_a, code_b) == (0, 0), (err_a, err_b, _named(events_a, "build.failed"))

    [skipped] = _named(events_b, "build.skipped")
    assert str(skipped["reason"]).startswith(
        f"already being built from another host: build {build_a} (claim image "
        f"osbuild-{build_a}-claim, ")
    assert _created(events_b) == []
    [done] = _named(events_a, "build.succeeded")
    assert done["promoted"] is True
    assert cron.leftovers(keep={str(done["image_id"])}) == []
    assert lock.active_builders(conn, family="ws2022-standard") == []
