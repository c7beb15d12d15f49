"""An edition the ISO does not hold fails in preflight, naming the editions it does hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuild.cloud.image_ranges import RangesUnsupported
from osbuild_sim.media import windows_iso
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _upload(cloud: Cloud, name: str, data: bytes) -> str:
    conn = cloud.sim.connect()
    return str(conn.image.create_image(name=name, disk_format="iso", container_format="bare",
                                       data=data).id)


def test_an_edition_missing_from_the_iso_fails_in_preflight(cloud: Cloud) -> None:
    iso = _upload(cloud, "ws2022-datacenter-only.iso",
                  windows_iso("2022", editions=("SERVERDATACENTERCORE", "SERVERDATACENTER")))
    spec = cloud.spec(windows={"iso_image": "ws2022-datacenter-only.iso",
                               "edition": "SERVERSTANDARD"})
    run = cloud.build(spec)
    assert run.exit_code == 2, run.why
    # Where it stopped is named, as for any failure (it was null for preflight's refusals).
    assert run.failure["stage"] == "preflight"
    report = json.loads(Path(run.failure["report"]).read_text())
    assert report["failed_stage"] == "preflight" and report["exit_code"] == 2
    assert ("windows.edition: SERVERSTANDARD is not on 'ws2022-datacenter-only.iso'; its "
            "install image holds: SERVERDATACENTERCORE (index 1, 10.0.20348, x64, en-US); "
            "SERVERDATACENTER (index 2, 10.0.20348, x64, en-US)") in run.why
    assert not run.named("stage")  # never booted, so no 1-hour WinPE wait
    assert cloud.leftovers(keep={iso}) == []


def test_an_edition_on_the_iso_passes(cloud: Cloud) -> None:
    _upload(cloud, "ws2022-datacenter-only.iso", windows_iso("2022",
                                                             editions=("SERVERDATACENTER",)))
    spec = cloud.spec(windows={"iso_image": "ws2022-datacenter-only.iso",
                               "edition": "serverdatacenter"}, updates={"enabled": False})
    run = cloud.build(spec)
    assert run.exit_code == 0, run.why


def test_unreadable_editions_say_which_command_shows_them(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ranges(self: object, start: int, end: int) -> bytes:
        raise RangesUnsupported("HTTP 200 to a Range request")

    monkeypatch.setattr("osbuild.cloud.image_ranges.ImageRanges._fetch", no_ranges)
    run = cloud.build(cloud.spec(updates={"enabled": False}))
    assert run.exit_code == 0, run.why
    [note] = [e["message"] for e in run.named("info") if "windows.edition" in e["message"]]
    assert "could not read the editions on 'windows-server-2022-x64.iso' from Glance" in note
    assert "`osbuild media inspect ISO` lists them" in note
