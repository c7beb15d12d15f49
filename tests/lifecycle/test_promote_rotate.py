"""Build, verify, promote; rotation, in-use and last-verified protection; rollback."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from osbuild import naming
from tests.lifecycle.conftest import EXAMPLE, KNOWN_PASSWORD, Lifecycle

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _built(lc: Lifecycle, spec: Any) -> str:
    result = lc.build(spec)
    assert result.code == 0, result.explain()
    return result.event("build.succeeded")["image_id"]


def _by_id(images: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in images}


def _wait_active(lc: Lifecycle, server_id: str) -> None:
    for _ in range(200):
        server = lc.conn.compute.get_server(server_id)
        if server.status == "ACTIVE":
            return
        assert server.status != "ERROR", server.fault
        time.sleep(0.05)
    raise AssertionError(f"server {server_id} never became ACTIVE")


def test_build_verifies_and_promotes(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-basic")
    result = lifecycle.build(spec)
    assert result.code == 0, result.explain()

    image_id = result.event("build.succeeded")["image_id"]
    passed = result.event("verify.passed")
    assert passed["image_id"] == image_id
    assert passed["metadata_service"] == "HttpService"
    image = lifecycle.image(image_id)
    props = image.properties
    assert props[naming.PROP_VERIFY] == "passed"
    assert props[naming.PROP_FAMILY] == "lc-basic"
    build_id = props[naming.PROP_BUILD_ID]
    assert props[naming.PROP_IMAGE_VERSION] == build_id
    assert image.name == f"lc-basic-{build_id}"
    assert not image.is_hidden
    assert naming.CURRENT_TAG in image.tags and "ws2022" in image.tags

    # m1.large has no root disk: the test server boots from a volume Cinder made first.
    verify_made = {e["kind"] for e in result.events() if e["event"] == "resource.created"
                   and e["name"].endswith(("-verify", "-verify-root"))}
    verify_gone = {e["kind"] for e in result.events() if e["event"] == "resource.deleted"
                   and e["name"].endswith(("-verify", "-verify-root"))}
    assert verify_made == verify_gone == {"keypair", "server", "volume"}

    # The console transcript of the test server is kept with the build's logs.
    console = (lifecycle.logs / build_id / "verify-console.log").read_text()
    assert "Plugins execution done" in console
    # The test server and the temporary keypair are gone; the password was never shown.
    assert lifecycle.leftovers() == {"servers": [], "volumes": [], "keypairs": []}
    everything = result.out + result.err + "".join(
        p.read_text(errors="replace") for p in (lifecycle.logs / build_id).rglob("*")
        if p.is_file())
    assert KNOWN_PASSWORD not in everything

    listed = lifecycle.family("lc-basic")
    assert [(i["id"], i["current"], i["verify"]) for i in listed] == [(image_id, True, "passed")]
    table = lifecycle.images(str(spec))
    assert table.code == 0, table.err
    row = next(line for line in table.out.splitlines() if image_id in line).split()
    assert row[0] == build_id and "passed" in row and "yes" in row


def test_local_target_image_boots_its_test_server_from_the_image(
        lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-local", example=EXAMPLE.parent / "ws2019-core-local.yaml")
    result = lifecycle.build(spec)
    assert result.code == 0, result.explain()
    image_id = result.event("build.succeeded")["image_id"]
    # The flavor has a root disk: no volume is made for the test server.
    created = [e for e in result.events() if e["event"] == "resource.created"
               and e["name"].endswith(("-verify", "-verify-root"))]
    assert sorted(e["kind"] for e in created) == ["keypair", "server"]
    image = lifecycle.image(image_id)
    assert image.properties["osbuild_verify"] == "passed"
    assert naming.CURRENT_TAG in image.tags


def test_second_build_hides_the_first_and_keep_limits_the_family(
        lifecycle: Lifecycle) -> None:
    # One family, three builds: the second hides the first, the third drops it (keep 2).
    spec = lifecycle.spec("lc-hide", image={"superseded": "hide", "keep": 2})
    first = _built(lifecycle, spec)
    second = _built(lifecycle, spec)

    images = _by_id(lifecycle.family("lc-hide"))
    assert images[second]["current"] and not images[second]["hidden"]
    assert not images[first]["current"] and images[first]["hidden"]
    assert images[first]["status"] == "active"
    assert naming.CURRENT_TAG not in lifecycle.image(first).tags
    # Default Glance listings no longer show the superseded image.
    visible = {i.id for i in lifecycle.conn.image.images(tag=naming.TAG)}
    assert second in visible and first not in visible

    # Without --json too, the build says what rotation deleted: cron mail must.
    first_name = lifecycle.image(first).name
    run = lifecycle.build(spec, json_lines=False)
    assert run.code == 0, run.explain()
    remaining = [i["id"] for i in lifecycle.family("lc-hide")]
    assert remaining[1:] == [second] and len(remaining) == 2
    third = remaining[0]
    build_id = lifecycle.image(third).properties[naming.PROP_BUILD_ID]
    report = json.loads((lifecycle.logs / build_id / "report.json").read_text())
    [rotated] = report["promotion"]["rotated"]
    assert (rotated["image_id"], rotated["image_name"], rotated["action"]) == (
        first, first_name, "delete")
    line = f"rotated: deleted image {first_name} ({first}): {rotated['reason']}"
    assert "newest 2" in rotated["reason"]
    assert f"  {line}" in run.out.splitlines()  # the summary
    assert any(err.endswith(f": {line}") for err in run.err.splitlines())  # the event's line
    page = (lifecycle.logs / build_id / "report.html").read_text()
    assert f"image deleted by rotation: {first_name} ({first})" in page


def test_second_build_deletes_the_first_per_policy(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-delete", image={"superseded": "delete"})
    first = _built(lifecycle, spec)
    second = _built(lifecycle, spec)

    assert [i["id"] for i in lifecycle.family("lc-delete")] == [second]
    assert lifecycle.conn.image.find_image(first, ignore_missing=True) is None


def test_image_in_use_survives_pruning(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-inuse", image={"superseded": "delete"})
    first = _built(lifecycle, spec)
    network = lifecycle.conn.network.find_network("private")
    flavor = lifecycle.conn.compute.find_flavor("m1.large")
    # A volume-backed server: only its volume's image metadata names the image.
    volume = lifecycle.conn.block_storage.create_volume(name="app-root", size=40,
                                                        image_id=first)
    lifecycle.conn.block_storage.wait_for_status(volume, "available", interval=0.05, wait=60)
    server = lifecycle.conn.compute.create_server(
        name="app-server", flavor_id=flavor.id, networks=[{"uuid": network.id}],
        block_device_mapping=[{
            "boot_index": 0, "uuid": volume.id, "source_type": "volume",
            "destination_type": "volume", "device_type": "disk",
            "delete_on_termination": True,
        }],
    )
    try:
        _wait_active(lifecycle, server.id)
        second = _built(lifecycle, spec)

        images = _by_id(lifecycle.family("lc-inuse"))
        assert set(images) == {first, second}
        assert images[first]["in_use"] == 1 and images[first]["hidden"]
        assert images[second]["current"]

        # Once the server is gone, pruning applies the policy.
        lifecycle.conn.compute.delete_server(server.id)
        lifecycle.conn.compute.wait_for_delete(server, interval=0.05, wait=30)
        prune = lifecycle.images("prune", "--family", "lc-inuse", "--superseded", "delete")
        assert prune.code == 0, prune.err
        assert f"deleted {first}" in prune.out
        assert [i["id"] for i in lifecycle.family("lc-inuse")] == [second]
    finally:
        if lifecycle.conn.compute.find_server(server.id, ignore_missing=True):
            lifecycle.conn.compute.delete_server(server.id)


def test_last_verified_image_is_never_deleted(lifecycle: Lifecycle) -> None:
    verified = _built(lifecycle, lifecycle.spec("lc-last", image={"superseded": "delete"}))
    # The next build skips its boot test: it becomes current, but it is not verified.
    unverified = _built(lifecycle, lifecycle.spec(
        "lc-last", image={"superseded": "delete"}, verify={"enabled": False}))

    images = _by_id(lifecycle.family("lc-last"))
    assert images[unverified]["current"] and images[unverified]["verify"] == "skipped"
    assert images[verified]["verify"] == "passed" and images[verified]["hidden"]

    prune = lifecycle.images("prune", "--family", "lc-last", "--keep", "1",
                             "--superseded", "delete", "--json")
    assert prune.code == 0, prune.err
    assert prune.out.count("\n") == 1 and json.loads(prune.out)["family"] == "lc-last"
    assert lifecycle.conn.image.find_image(verified, ignore_missing=True) is not None
    assert "last verified" in prune.out


def test_rollback_then_a_prune_dry_run_then_a_prune(lifecycle: Lifecycle) -> None:
    spec = lifecycle.spec("lc-roll", image={"superseded": "hide", "keep": 5})
    first = _built(lifecycle, spec)
    second = _built(lifecycle, spec)

    back = lifecycle.images("rollback", "--family", "lc-roll")
    assert back.code == 0, back.err
    assert first in back.out
    images = _by_id(lifecycle.family("lc-roll"))
    assert images[first]["current"] and not images[first]["hidden"]
    assert not images[second]["current"] and images[second]["hidden"]

    # Nothing older than the first image: a second rollback has nowhere to go.
    again = lifecycle.images("rollback", "--family", "lc-roll")
    assert again.code == 2 and "no verified image older" in again.err

    forward = lifecycle.images("promote", second)
    assert forward.code == 0, forward.err
    images = _by_id(lifecycle.family("lc-roll"))
    assert images[second]["current"] and not images[first]["current"]

    def state() -> list[dict]:
        # Everything but the age, which the clock changes between two listings.
        return [{k: v for k, v in image.items() if k != "age_seconds"}
                for image in lifecycle.family("lc-roll")]

    before = state()
    dry = lifecycle.images("prune", "--family", "lc-roll", "--keep", "1", "--dry-run")
    assert dry.code == 0, dry.err
    assert f"would delete {first}" in dry.out
    assert state() == before

    done = lifecycle.images("prune", str(spec), "--keep", "1")
    assert done.code == 0, done.err
    assert [i["id"] for i in lifecycle.family("lc-roll")] == [second]


def test_a_rollback_passes_over_the_image_rolled_back_from_until_it_is_promoted(
        lifecycle: Lifecycle) -> None:
    # The operator rejects the second build (rollback to the first); a third build comes;
    # a rollback from it must not bring back the rejected image, but the first.
    spec = lifecycle.spec("lc-reject", image={"superseded": "hide", "keep": 5})
    first = _built(lifecycle, spec)
    rejected = _built(lifecycle, spec)
    back = lifecycle.images("rollback", "--family", "lc-reject")
    assert back.code == 0, back.err
    assert f"is marked rolled back from: a later rollback passes over it (osbuild images " \
           f"promote {rejected} takes it back)" in back.out
    images = _by_id(lifecycle.family("lc-reject"))
    assert images[first]["current"] and images[rejected]["rolled_back_at"]
    listed = lifecycle.images("--family", "lc-reject")
    assert "rolled back" in next(line for line in listed.out.splitlines() if rejected in line)

    third = _built(lifecycle, spec)
    again = lifecycle.images("rollback", "--family", "lc-reject", "--json")
    assert again.code == 0, again.err
    done = json.loads(again.out)
    assert done["image"]["id"] == first
    assert done["rolled_back_from"]["id"] == third
    # As the rollback left it, not as it was before (it showed current, unmarked: s31).
    assert done["rolled_back_from"]["current"] is False
    assert done["rolled_back_from"]["rolled_back_at"]
    assert [i["id"] for i in done["passed_over"]] == [rejected]
    images = _by_id(lifecycle.family("lc-reject"))
    assert images[first]["current"] and images[third]["rolled_back_at"]

    # Promoting one on purpose clears its mark; a rollback from it passes over the other.
    forward = lifecycle.images("promote", third)
    assert forward.code == 0, forward.err
    images = _by_id(lifecycle.family("lc-reject"))
    assert images[third]["current"] and images[third]["rolled_back_at"] is None
    assert images[rejected]["rolled_back_at"]
    # With the first image gone too, nothing is left: the error names what it passed over.
    lifecycle.conn.image.update_image(first, protected=False)
    lifecycle.conn.image.delete_image(first)
    last = lifecycle.images("rollback", "--family", "lc-reject")
    assert last.code == 2
    assert f"; {images[rejected]['name']} ({rejected}) was rolled back from at " \
           f"{images[rejected]['rolled_back_at']} (osbuild images promote {rejected} takes " \
           "it back)" in last.err
