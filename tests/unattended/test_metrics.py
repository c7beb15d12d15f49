"""The Prometheus textfile: valid exposition format, merged per family, atomic, concurrent."""

from __future__ import annotations

import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from osbuild.unattended import metrics
from osbuild.unattended.metrics import BuildOutcome

T1 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _key(family: str, cloud: str = "prod", **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"family": family, "cloud": cloud, **more}.items()))


def test_success_then_failure_keeps_last_success(tmp_path: Path) -> None:
    path = tmp_path / "osbuild.prom"
    metrics.record(path, BuildOutcome("ws2022", "prod", "success", 3600.5, T1))
    metrics.record(path, BuildOutcome("ws2022", "prod", "failure", 120.0, T2))
    samples = _samples(path)
    assert samples[("osbuild_last_success_timestamp_seconds", _key("ws2022"))] == T1.timestamp()
    assert samples[("osbuild_last_build_timestamp_seconds", _key("ws2022"))] == T2.timestamp()
    assert samples[("osbuild_last_build_result", _key("ws2022"))] == 0
    assert samples[("osbuild_last_build_duration_seconds", _key("ws2022"))] == 120.0
    assert samples[("osbuild_builds_total", _key("ws2022", result="success"))] == 1
    assert samples[("osbuild_builds_total", _key("ws2022", result="failure"))] == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "osbuild.prom"
    ]


def test_other_families_and_clouds_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "osbuild.prom"
    metrics.record(path, BuildOutcome("ws2019", "prod", "success", 10.0, T1))
    metrics.record(path, BuildOutcome("ws2022", "staging", "success", 20.0, T1))
    metrics.record(path, BuildOutcome("ws2022", "prod", "skipped", None, T2))
    samples = _samples(path)
    assert samples[("osbuild_last_build_duration_seconds", _key("ws2019"))] == 10.0
    assert samples[("osbuild_last_build_duration_seconds", _key("ws2022", "staging"))] == 20.0
    # a skip records that the job ran, not a build
    assert samples[("osbuild_last_run_timestamp_seconds", _key("ws2022"))] == T2.timestamp()
    assert ("osbuild_last_build_result", _key("ws2022")) not in samples


def test_label_values_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "osbuild.prom"
    cloud = 'we"ird\\cloud\nname'
    metrics.record(path, BuildOutcome("ws2022", cloud, "success", 1.0, T1))
    metrics.record(path, BuildOutcome("ws2022", cloud, "success", 2.0, T2))
    samples = _samples(path)
    assert samples[("osbuild_last_build_duration_seconds", _key("ws2022", cloud))] == 2.0
    assert samples[("osbuild_builds_total", _key("ws2022", cloud, result="success"))] == 2


def test_concurrent_writers_lose_no_family(tmp_path: Path) -> None:
    path = tmp_path / "osbuild.prom"
    families = [f"fam{i}" for i in range(16)]
    threads = [
        threading.Thread(target=metrics.record, args=(path, BuildOutcome(f, "c", "success", 1.0)))
        for f in families
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = _samples(path)
    assert {
        dict(labels)["family"]
        for (name, labels) in samples
        if name == "osbuild_last_build_result"
    } == set(families)


def test_garbage_in_existing_file_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "osbuild.prom"
    path.write_text("this is not prometheus\nsomething_else 1\n")
    metrics.record(path, BuildOutcome("ws2022", "prod", "success", 1.0, T1))
    names = {name for name, _ in _samples(path)}
    assert "something_else" not in names and "osbuild_last_build_result" in names
