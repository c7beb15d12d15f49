"""Durable build state: atomic, private, validated, thread-safe updates, no secrets."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from osbuild import naming
from osbuild.errors import InvalidInput
from osbuild.unattended.state import BuildState, BuildStatus, StateStore, default_state_dir


def _state(build_id: str | None = None, **kw: object) -> BuildState:
    fields: dict[str, object] = {
        "build_id": build_id or naming.new_build_id(),
        "family": "ws2022-standard",
        "cloud": "osbuild-sim",
        "records": {"render": {"nonce": "0" * 32}},
        "spec_path": "/specs/ws2022.yaml",
        "spec_digest": "ab" * 32,
    }
    return BuildState.model_validate({**fields, **kw})


def test_default_dir_follows_xdg_and_ignores_relative(tmp_path: Path) -> None:
    assert default_state_dir({"XDG_STATE_HOME": str(tmp_path), "HOME": "/h"}) == (
        tmp_path / "osbuild"
    )
    assert default_state_dir({"XDG_STATE_HOME": "rel/dir", "HOME": "/h"}) == Path(
        "/h/.local/state/osbuild"
    )
    assert default_state_dir({"HOME": "/h"}) == Path("/h/.local/state/osbuild")


def test_save_load_roundtrip_file_is_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    state = store.save(_state(resources={"builder": "srv-1"}))
    path = store.path_for(state.build_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    loaded = store.load(state.build_id)
    assert loaded == state
    assert json.loads(path.read_text())["resources"] == {"builder": "srv-1"}
    # no temporary files left behind by the atomic write
    assert [p.name for p in store.builds_dir.iterdir()] == [path.name]


def test_update_steps_resources_and_finish(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    build_id = store.save(_state()).build_id
    store.step_started(build_id, "create_volumes")
    store.record_resource(build_id, "iso", "vol-1")
    store.step_finished(build_id, "create_volumes")
    store.save_record(build_id, "install", {"transcript_position": 1234})
    store.save_record(build_id, "install", {"last_stage": "winpe"})
    store.forget_resource(build_id, "iso")
    done = store.finish(build_id, BuildStatus.FAILED, error="guest failure")
    loaded = store.load(build_id)
    assert loaded == done
    assert loaded.steps_done == ["create_volumes"]
    assert loaded.resources == {}
    assert loaded.records["install"] == {"transcript_position": 1234, "last_stage": "winpe"}
    assert loaded.status is BuildStatus.FAILED and loaded.is_finished


def test_concurrent_record_resource_loses_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    build_id = store.save(_state()).build_id
    roles = [f"vol-{i}" for i in range(12)]
    threads = [
        threading.Thread(target=store.record_resource, args=(build_id, r, r + "-id"))
        for r in roles
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load(build_id).resources == {r: r + "-id" for r in roles}


def test_secret_looking_roles_and_unknown_fields_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    build_id = store.save(_state()).build_id
    with pytest.raises(ValueError, match="secrets are never stored"):
        store.record_resource(build_id, "admin_password", "hunter2")
    with pytest.raises(ValueError):
        store.update(build_id, windows_password="hunter2")
    with pytest.raises(ValueError, match=r"render\.admin_password: secrets are never stored"):
        store.save_record(build_id, "render", {"admin_password": "hunter2"})
    assert "hunter2" not in store.path_for(build_id).read_text()


def test_bad_build_ids_and_missing_or_corrupt_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with pytest.raises(InvalidInput, match="not a build id"):
        store.path_for("../../etc/passwd")
    with pytest.raises(InvalidInput, match="no state for build"):
        store.load("20261126t031500-a1b2c3")
    store.ensure()
    store.path_for("20261126t031500-a1b2c3").write_text("{not json")
    with pytest.raises(InvalidInput, match="is not valid"):
        store.load("20261126t031500-a1b2c3")


def test_list_filters_and_skips_unreadable(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    a = store.save(_state("20261126t010000-aaaaaa"))
    b = store.save(_state("20261126t020000-bbbbbb", cloud="other"))
    c = store.save(_state("20261126t030000-cccccc", status=BuildStatus.SUCCEEDED))
    (store.builds_dir / "20261126t040000-dddddd.json").write_text("garbage")
    assert [s.build_id for s in store.list()] == [a.build_id, b.build_id, c.build_id]
    assert [s.build_id for s in store.list(cloud="other")] == [b.build_id]
    assert [s.build_id for s in store.list(status=BuildStatus.RUNNING, cloud="osbuild-sim")] == [
        a.build_id
    ]
    store.remove(a.build_id)
    assert not store.exists(a.build_id)
