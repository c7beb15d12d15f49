"""gc's decisions without a cloud: which build is running, which image is garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from osbuild import naming
from osbuild.unattended import gc
from osbuild.unattended.fingerprint import PROP_BUILD_TIME
from osbuild.unattended.state import BuildState, BuildStatus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BID = "20261126t030000-aaaaaa"


def _state(**kw: object) -> BuildState:
    base = {"build_id": BID, "family": "ws2022", "cloud": "c", "nonce": "0" * 32,
            "spec_path": "/s.yaml", "spec_digest": "d", "host": "here", "pid": 4242,
            "updated_at": NOW - timedelta(hours=1)}
    return BuildState.model_validate({**base, **kw})


def _live(states: list[BuildState], fresh: set[str], alive: bool = False) -> gc.Liveness:
    return gc.Liveness({s.build_id: s for s in states}, frozenset(fresh), NOW,
                       hostname="here", pid_alive=lambda pid: alive)


def test_local_process_decides_for_local_builds() -> None:
    # killed on this host a moment ago: its heartbeat is still fresh, but we know better
    assert _live([_state()], {BID}, alive=False).running(BID) is None
    assert "pid 4242" in (_live([_state()], set(), alive=True).running(BID) or "")


def test_finished_builds_never_count_as_running() -> None:
    done = _state(status=BuildStatus.FAILED)
    assert _live([done], {BID}, alive=True).running(BID) is None


def test_other_hosts_count_by_heartbeat_or_recent_state() -> None:
    assert "heartbeat" in (_live([], {BID}).running(BID) or "")
    assert _live([], set()).running(BID) is None
    remote = _state(host="elsewhere", updated_at=NOW - timedelta(seconds=30))
    assert "elsewhere" in (_live([remote], set()).running(BID) or "")
    stale = _state(host="elsewhere", updated_at=NOW - timedelta(hours=2))
    assert _live([stale], set()).running(BID) is None


def _image(name: str) -> gc.Resource:
    return gc.Resource("image", "img-1", name, BID, 99999.0, "active")


def test_only_temporary_images_are_garbage() -> None:
    temp = _image(naming.resource_name(BID, "config"))
    assert gc._image_keep_reason(temp, {naming.PROP_ROLE: "config"}, {}) is None
    # captured, never published: still has its temporary name
    captured = _image(naming.resource_name(BID, "image"))
    assert gc._image_keep_reason(captured, {naming.PROP_ROLE: "image"}, {}) is None
    published = _image("ws2022-std-20261126")
    assert gc._image_keep_reason(published, {naming.PROP_ROLE: "image"}, {}) is not None
    assert gc._image_keep_reason(published, {}, {}) is not None
    # provenance, the current tag or protection always win
    assert gc._image_keep_reason(captured, {PROP_BUILD_TIME: "2026-11-26T04:00:00"}, {})
    assert gc._image_keep_reason(captured, {"tags": [naming.CURRENT_TAG]}, {})
    assert gc._image_keep_reason(captured, {"is_protected": True}, {})
    finished = _state(status=BuildStatus.SUCCEEDED, image_id="img-1")
    assert gc._image_keep_reason(captured, {}, {BID: finished})


def test_an_unproven_image_of_a_dead_build_is_garbage() -> None:
    # Killed during its boot test: its run would have deleted the image (only a verified one
    # outlives a failure), and once gc marks the build failed nothing else ever would:
    # rotation leaves `pending` images to the build it thinks is still running.
    published = {PROP_BUILD_TIME: "2026-11-26T04:00:00", naming.PROP_ROLE: "image"}
    captured = _image(naming.resource_name(BID, "image"))
    pending = {**published, naming.PROP_VERIFY: "pending"}
    assert gc._image_keep_reason(captured, pending, {}) is None
    assert gc._image_keep_reason(captured, pending, {BID: _state()}) is None
    for verdict in ("passed", "skipped", "failed"):  # the product, or kept to look at
        assert gc._image_keep_reason(captured, {**published, naming.PROP_VERIFY: verdict}, {})
    current = {**pending, "tags": [naming.CURRENT_TAG]}
    assert gc._image_keep_reason(captured, current, {})
    assert gc._image_keep_reason(captured, {**pending, "is_protected": True}, {})


def test_age_falls_back_to_the_build_id_time() -> None:
    assert gc._age(None, BID, NOW) == 9 * 3600
    assert gc._age("2026-11-26T11:00:00Z", BID, NOW) == 3600
    assert gc._age("2026-11-26T11:00:00.000000", BID, NOW) == 3600


def test_a_dead_builds_leftovers_go_together_or_not_at_all() -> None:
    # Killed 5h59m into a build (its state on this host, its process gone): the config
    # image and the builder's port are older than 6h, the target volume is not. Removing
    # the old ones alone would break the resume that could still finish it.
    def res(kind: gc.Kind, rid: str, age: float) -> gc.Resource:
        return gc.Resource(kind, rid, naming.resource_name(BID, rid), BID, age)

    found = [res("image", "config", 6 * 3600 + 60), res("port", "port", 6 * 3600 + 30),
             res("volume", "target", 6 * 3600 - 60)]
    props = {"config": {naming.PROP_ROLE: "config"}}
    live = _live([_state()], set(), alive=False)
    kept, doomed = gc.decide(found, props, {BID: _state()}, live, 6 * 3600)
    assert doomed == []
    reasons = {k.resource.id: k.reason for k in kept}
    assert reasons["target"] == "younger than 6h"
    assert reasons["config"] == "younger than 6h (its build's newest resource is 5h59m old)"
    assert reasons["port"].startswith("younger than 6h")
    # Its state here says running: `osbuild resume` can finish it (gc's text lists it).
    assert {k.kept_for for k in kept} == {"resume"}
    kept, _ = gc.decide(found, props, {BID: _state(status=BuildStatus.FAILED)}, live, 6 * 3600)
    assert {k.kept_for for k in kept} == {"young"}
    # Once the newest is old enough, all of it goes, servers and ports before volumes.
    kept, doomed = gc.decide(found, props, {BID: _state()}, live, 5 * 3600)
    assert kept == [] and [r.kind for r in doomed] == ["port", "volume", "image"]
    # 0: any age.
    assert len(gc.decide(found, props, {BID: _state()}, live, 0)[1]) == 3
