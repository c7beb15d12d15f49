"""osbuild gc against the simulated cloud: leftovers of a dead build go, everything else stays."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.cli import main
from osbuild.errors import EXIT_OK
from osbuild.unattended import gc
from osbuild.unattended.fingerprint import PROP_BUILD_TIME
from osbuild.unattended.state import BuildState, BuildStatus, StateStore

from .helpers import image as _image
from .helpers import public_key as _public_key
from .helpers import server as _server
from .helpers import volume as _volume

DEAD = "20261126t010000-dead00"  # orchestrator killed on this host
REMOTE = "20261126t020000-11fe00"  # running on another host, heartbeat fresh
LOCAL = "20261126t020000-10ca10"  # running on this host (process alive)
LOCAL_PID = 777_777


@dataclass
class World:
    sim: Any
    conn: Any
    store: StateStore
    now: datetime  # "later": when gc runs in the test
    ids: dict[str, str]


@pytest.fixture
def world(sim: Any, tmp_path: Path) -> World:
    conn = sim.connect()
    later = datetime.now(UTC) + timedelta(days=2)
    ids: dict[str, str] = {}
    # The dead build: builder (stale heartbeat), ISO volume, hidden config image, its
    # captured but never published image, a verify keypair, and a published image.
    ids["dead_server"] = _server(conn, DEAD, "ws2022", later - timedelta(hours=3)).id
    ids["dead_volume"] = _volume(conn, DEAD, "iso").id
    config = _image(conn, naming.resource_name(DEAD, "config"), tags=[naming.TAG],
                    **naming.labels(DEAD, "ws2022", "config"))
    ids["dead_config"] = conn.image.update_image(config, is_hidden=True).id
    ids["dead_capture"] = _image(
        conn, naming.resource_name(DEAD, "image"), **naming.labels(DEAD, "ws2022", "image")).id
    ids["dead_keypair"] = conn.compute.create_keypair(
        name=naming.resource_name(DEAD, "verify"), public_key=_public_key()).name
    ids["published"] = _image(
        conn, "ws2022-std-20261120", **{naming.PROP_FAMILY: "ws2022",
                                       naming.PROP_BUILD_ID: "20261120t010000-01d000",
                                       PROP_BUILD_TIME: "2026-11-20T04:00:00+00:00"}).id
    # Another host's build, alive: its builder's heartbeat is fresh at `later`.
    ids["remote_server"] = _server(conn, REMOTE, "ws2019", later - timedelta(seconds=20)).id
    ids["remote_volume"] = _volume(conn, REMOTE, "target").id
    # A build of this host whose process is alive (no builder yet).
    ids["local_volume"] = _volume(conn, LOCAL, "virtio").id
    # Not osbuild's at all.
    ids["foreign_volume"] = conn.block_storage.create_volume(size=1, name="someone-else").id
    for vid in (ids["dead_volume"], ids["remote_volume"], ids["local_volume"]):
        conn.block_storage.wait_for_status(conn.block_storage.get_volume(vid), "available",
                                           interval=0.05, wait=30)
    for sid in (ids["dead_server"], ids["remote_server"]):
        conn.compute.wait_for_server(conn.compute.get_server(sid), status="ACTIVE",
                                     interval=0.05, wait=30)

    store = StateStore(tmp_path / "state")
    common = {"family": "ws2022", "cloud": sim.cloud_name, "nonce": "0" * 32,
              "spec_path": "/s.yaml", "spec_digest": "d"}
    logs = tmp_path / "logs"
    for build_id in (DEAD, LOCAL):  # what render leaves in each work dir, and the transcript
        (logs / build_id / naming.MEDIA_DIR / "config").mkdir(parents=True)
        (logs / build_id / naming.MEDIA_DIR / "config" / "autounattend.xml").write_text("<x/>")
        (logs / build_id / "console.log").write_text("booted\n")
    common["log_dir"] = str(logs)
    store.save(BuildState(build_id=DEAD, pid=LOCAL_PID + 1, **common))
    store.save(BuildState(build_id=LOCAL, pid=LOCAL_PID, **common))
    return World(sim, conn, store, later, ids)


def _liveness() -> Any:
    return functools.partial(gc.Liveness, pid_alive=lambda pid: pid == LOCAL_PID)


def _osbuild_ids(sim: Any) -> set[str]:
    res = sim.resources()
    out = {s["id"] for s in res["servers"]}
    out |= {v["id"] for v in res["volumes"]}
    out |= {i["id"] for i in res["images"] if not i["seeded"]}
    out |= {k["name"] for k in res.get("keypairs", [])}
    return out


def _cleanup(world: World) -> None:
    gc.collect(world.conn, older_than=0, store=None, now=world.now,
               liveness=lambda states, fresh, now: gc.Liveness(
                   states, frozenset(), now, pid_alive=lambda pid: False))
    for image in world.conn.image.images():
        if image.name == "ws2022-std-20261120":
            world.conn.image.delete_image(image.id)
    world.conn.block_storage.delete_volume(world.ids["foreign_volume"], ignore_missing=True)


def test_a_retired_build_tells_its_specs_webhook(world: World, tmp_path: Path) -> None:
    # A build whose osbuild died (SIGKILL, reboot) never sent its webhook: cron's alerts
    # heard nothing of it. gc retiring it is its end, told as a failure (an outside
    # tryout, s31). Only the spec's family, and only once.
    import yaml

    from osbuild.resources import examples_dir
    from tests.support.webhook import WebhookReceiver

    hook = WebhookReceiver()
    try:
        data = yaml.safe_load((examples_dir() / "ws2022-standard.yaml").read_text())
        data.update(name="ws2022", notify={"url": hook.url, "on": ["failure"]})
        (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"MZ")
        spec = tmp_path / "ws2022.yaml"
        spec.write_text(yaml.safe_dump(data))
        state = world.store.load(DEAD)
        state.spec_path, state.step = str(spec), "install"
        world.store.save(state)
        gc.collect(world.conn, older_than=6 * 3600, store=world.store, now=world.now,
                   liveness=_liveness())
        gc.collect(world.conn, older_than=6 * 3600, store=world.store, now=world.now,
                   liveness=_liveness())
        [body] = hook.delivered
        assert (body["build_id"], body["family"], body["result"], body["stage"]) == (
            DEAD, "ws2022", "failure", "install")
        assert body["reason"] == (f"its osbuild (pid {LOCAL_PID + 1}) died in step install; "
                                  "abandoned; its resources were removed by osbuild gc")
        assert body["abandoned"] is True and body["exit_code"] == 1
        # The keys every webhook has, as a consumer reads them.
        assert {"kind", "kept", "report", "parent_image_id", "interrupted",
                "resumed_duration_seconds"} <= set(body)
    finally:
        hook.close()
        _cleanup(world)


def test_dry_run_lists_dead_build_only(world: World) -> None:
    try:
        before = _osbuild_ids(world.sim)
        result = gc.collect(world.conn, older_than=6 * 3600, dry_run=True, store=world.store,
                            now=world.now, liveness=_liveness())
        listed = {r.id for r in result.removed}
        w = world.ids
        assert listed == {w["dead_server"], w["dead_volume"], w["dead_config"],
                          w["dead_capture"], w["dead_keypair"]} | _ports_of(world, "dead_server")
        assert [r.kind for r in result.removed][:1] == ["server"]
        kept = {k.resource.id: k.reason for k in result.kept}
        assert "heartbeat" in kept[w["remote_server"]]
        assert "pid 777777" in kept[w["local_volume"]]
        assert "published" in kept[w["published"]]
        assert w["foreign_volume"] not in kept and w["foreign_volume"] not in listed
        assert _osbuild_ids(world.sim) == before
        assert world.store.load(DEAD).status is BuildStatus.RUNNING
    finally:
        _cleanup(world)


def _ports_of(world: World, key: str) -> set[str]:
    return {p["id"] for p in world.sim.resources()["ports"]
            if p["device_id"] == world.ids[key]}


def test_young_resources_are_kept(world: World) -> None:
    try:
        result = gc.collect(world.conn, older_than=365 * 86400, dry_run=True,
                            store=world.store, now=world.now, liveness=_liveness())
        assert result.removed == []
    finally:
        _cleanup(world)


def test_removes_in_order_and_marks_the_build_abandoned(world: World) -> None:
    try:
        w = world.ids
        dead_ports = _ports_of(world, "dead_server")
        last_heard = world.store.load(DEAD).updated_at
        result = gc.collect(world.conn, older_than=6 * 3600, store=world.store,
                            now=world.now, liveness=_liveness())
        assert result.ok and result.failed == []
        assert [r.kind for r in result.removed] == sorted(
            (r.kind for r in result.removed), key=gc.ORDER.index)
        left = _osbuild_ids(world.sim)
        for key in ("dead_server", "dead_volume", "dead_config", "dead_capture",
                    "dead_keypair"):
            assert w[key] not in left, key
        assert not dead_ports & {p["id"] for p in world.sim.resources()["ports"]}
        for key in ("remote_server", "remote_volume", "local_volume", "published",
                    "foreign_volume"):
            assert w[key] in left, key
        assert result.abandoned_builds == [DEAD]
        state = world.store.load(DEAD)
        assert state.status is BuildStatus.FAILED and "osbuild gc" in (state.error or "")
        # It ended when its osbuild died, not when gc came: `status` said "failed in 2h11m"
        # of a build killed at 46 minutes (found from outside, session 29).
        assert state.updated_at == last_heard
        assert world.store.load(LOCAL).status is BuildStatus.RUNNING
        # The dead build's answer file (its password) went with it; its transcript and the
        # running build's media stay.
        dead_dir, local_dir = (Path(state.log_dir or "") / state.build_id for state in
                               (world.store.load(DEAD), world.store.load(LOCAL)))
        assert not (dead_dir / naming.MEDIA_DIR).exists()
        assert (dead_dir / "console.log").exists()
        assert (local_dir / naming.MEDIA_DIR / "config" / "autounattend.xml").exists()
        # a second run finds nothing more to do
        again = gc.collect(world.conn, older_than=6 * 3600, store=world.store,
                           now=world.now, liveness=_liveness())
        assert again.removed == [] and again.failed == []
    finally:
        _cleanup(world)


def test_cli_dry_run_json_and_removal(world: World, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    try:
        clouds = world.sim.write_clouds_yaml(tmp_path / "clouds.yaml")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        cloud = world.sim.cloud_name
        state_dir = str(world.store.root)
        # Through the CLI the real clock applies: the dead build's resources are minutes
        # old, so --older-than 6h keeps all of them...
        code = main(["gc", "--os-cloud", cloud, "--state-dir", state_dir, "--dry-run",
                     "--json"])
        printed = capsys.readouterr().out
        assert printed.count("\n") == 1  # one JSON object per line, as every --json prints
        out = json.loads(printed)
        assert code == EXIT_OK
        assert out[cloud]["dry_run"] is True
        # ...and --older-than 0 takes everything that belongs to no running build. The
        # DEAD state's pid is not alive here, so it is collected; the remote builder's
        # heartbeat lies two days ahead: nonsense, not fresh, collected as well.
        code = main(["gc", "--os-cloud", cloud, "--state-dir", state_dir,
                     "--older-than", "0"])
        text = capsys.readouterr().out
        assert code == EXIT_OK
        assert f"removed server {world.ids['dead_server']}" in text
        left = _osbuild_ids(world.sim)
        assert world.ids["dead_volume"] not in left
        assert world.ids["published"] in left and world.ids["foreign_volume"] in left
    finally:
        _cleanup(world)


def test_hourly_text_lists_what_matters_and_json_every_decision(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # etc/ runs `osbuild gc` hourly into gc.log: it printed "kept image ...: a published
    # image" for every image at every run, burying what it deleted or left for a reason.
    try:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE",
                           str(world.sim.write_clouds_yaml(tmp_path / "clouds.yaml")))
        # LOCAL runs on another host now (its state is fresh): a running build's resources.
        local = world.store.load(LOCAL)
        world.store.save(local.model_copy(update={"host": "elsewhere"}))
        argv = ["gc", "--os-cloud", world.sim.cloud_name, "--state-dir", str(world.store.root)]
        for dry_run in ([], ["--dry-run"]):
            assert main([*argv, *dry_run]) == EXIT_OK
            lines = capsys.readouterr().out.splitlines()
            assert not any("published image" in line for line in lines[:-1])
            assert [line for line in lines if line.startswith("kept ")] == lines[:2]
            assert lines[0].startswith(
                f"kept volume {world.ids['local_volume']} {naming.resource_name(LOCAL, 'virtio')}"
                f": build {LOCAL} is running on elsewhere (state updated ")
            assert lines[1].startswith(f"kept dead build {DEAD}'s 6 resources for resume "
                                       "(newest ")
            assert world.ids["dead_volume"] in lines[1]
            # REMOTE's server, port and volume (its builder's heartbeat is stale, it has no
            # state here) and the published image: only counted.
            verb = "would remove" if dry_run else "removed"
            assert lines[2:] == [f"0 {verb}, 11 kept (1 of running builds, 6 for resume, "
                                 "3 younger than 6h, 1 published image)"]
        assert main([*argv, "--json"]) == EXIT_OK
        [result] = json.loads(capsys.readouterr().out).values()
        kept = {k["id"]: (k["kept_for"], k["reason"]) for k in result["kept"]}
        assert len(kept) == 11
        assert kept[world.ids["published"]] == ("published", "a published image")
        assert kept[world.ids["remote_volume"]] == ("young", "younger than 6h")
        assert kept[world.ids["dead_config"]][0] == "resume"
    finally:
        _cleanup(world)
