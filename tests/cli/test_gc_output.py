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
    kept = Kept(Resource("port", "e98a6a35", "", BID, 60), f"build {BID} is running")
    _print_text("east", GcResult(dry_run=False, older_than=6 * 3600, removed=[port, volume],
                                 kept=[kept]), show_cloud=False)
    assert capsys.readouterr().out.splitlines() == [
        f"removed port 0a6dc942 (build {BID}, 6h1m old)",
        f"removed volume 5a67ccb7 osbuild-{BID}-iso (build {BID}, 6h1m old)",
        f"kept port e98a6a35: build {BID} is running",
        "2 removed, 1 kept"]
