"""How `osbuild gc` lists what it removed and kept, on a terminal or in cron mail."""

from __future__ import annotations

import pytest

from osbuild.cli.gc import _print_text
from osbuild.unattended.gc import GcResult, Kept, Resource

BID = "20261201t202202-eab3c1"


def test_a_nameless_port_reads_without_a_gap(capsys: pytest.CaptureFixture[str]) -> None:
    # Nova names no port it makes for a server: the line once read "port ID  (build".
    port = Resource("port", "0a6dc942", "", BID, 6 * 3600 + 60)
    volume = Resource("volume", "5a67ccb7", f"osbuild-{BID}-iso", BID, 6 * 3600 + 60)
    kept = Kept(Resource("port", "e98a6a35", "", BID, 60), f"build {BID} is running",
                "running")
    _print_text("east", GcResult(dry_run=False, older_than=6 * 3600, removed=[port, volume],
                                 kept=[kept]), show_cloud=False)
    assert capsys.readouterr().out.splitlines() == [
        f"removed port 0a6dc942 (build {BID}, 6h1m old)",
        f"removed volume 5a67ccb7 osbuild-{BID}-iso (build {BID}, 6h1m old)",
        f"kept port e98a6a35: build {BID} is running",
        "2 removed, 1 kept (1 of running builds)"]


DEAD = "20261201t190000-dead00"


def test_published_images_are_counted_and_a_dead_build_is_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Cron runs gc hourly into gc.log: one "kept image ...: a published image" line per
    # image per hour buried what was deleted or left for a reason.
    published = [Kept(Resource("image", f"img{i}", f"ws2022-{i}", f"20261{i}01t010000-aaaaaa",
                               86400.0), "a published image") for i in range(3)]
    dead = [Kept(Resource("volume", "v1", f"osbuild-{DEAD}-iso", DEAD, 7200), "younger than 6h",
                 "resume"),
            Kept(Resource("keypair", f"osbuild-{DEAD}-verify", f"osbuild-{DEAD}-verify", DEAD,
                          3600), "younger than 6h", "resume")]
    other = Kept(Resource("volume", "v9", "osbuild-x", "20261201t200000-cccccc", 60),
                 "younger than 6h", "young")
    doomed = Resource("server", "s1", f"osbuild-{BID}-builder", BID, 7 * 3600)
    _print_text("east", GcResult(dry_run=True, older_than=6 * 3600, removed=[doomed],
                                 kept=[*published, *dead, other]), show_cloud=True)
    assert capsys.readouterr().out.splitlines() == [
        f"[east] would remove server s1 osbuild-{BID}-builder (build {BID}, 7h old)",
        f"[east] kept dead build {DEAD}'s 2 resources for resume (newest 1h old, younger "
        f"than 6h): volume v1 osbuild-{DEAD}-iso, keypair osbuild-{DEAD}-verify",
        "[east] 1 would remove, 6 kept (2 for resume, 1 younger than 6h, 3 published images)"]


def test_a_build_gc_emptied_itself_is_told_apart_from_one_found_empty(
        capsys: pytest.CaptureFixture[str]) -> None:
    # "nothing of it is left to resume" right after six "removed" lines read as if gc had
    # found nothing of the build (found from outside, session 30).
    other = "20261201t180000-e0e0e0"
    removed = [Resource("volume", f"v{i}", f"osbuild-{DEAD}-v{i}", DEAD, 7 * 3600)
               for i in range(2)]
    _print_text("east", GcResult(dry_run=False, older_than=6 * 3600, removed=removed,
                                 abandoned_builds=[DEAD, other]), show_cloud=False)
    lines = capsys.readouterr().out.splitlines()
    assert (f"marked dead build {DEAD} failed: its 2 resources removed above, nothing is "
            "left to resume") in lines
    assert f"marked dead build {other} failed: nothing of it is left to resume" in lines
