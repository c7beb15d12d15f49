"""Webhook, Prometheus textfile, multi-cloud builds and short-lived tokens, through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from osbuild.cli import main
from osbuild_sim import SimCloud
from tests.cron.conftest import Cron
from tests.e2e.conftest import SPEED, WORK_PACE, Cloud
from tests.support.webhook import WebhookReceiver

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver.refusing(1)
    yield hook
    hook.close()


def test_webhook_gets_the_summary_after_one_injected_failure(cron: Cron,
                                                            receiver: WebhookReceiver) -> None:
    spec = cron.spec(notify={"url": receiver.url, "on": ["success", "failure"]})
    run = cron.build(spec)
    assert run.exit_code == 0, run.why
    assert receiver.statuses == [503, 200]
    [summary] = receiver.delivered
    done = run.success
    assert summary["result"] == "success" and summary["build_id"] == done["build_id"]
    assert summary["interrupted"] is False and done["cloud"] == cron.sim.cloud_name
    assert summary["image"]["id"] == done["image_id"]
    assert summary["fingerprint"] == done["fingerprint"] and len(summary["fingerprint"]) == 64
    assert summary["verify"] == "passed" and summary["promoted"] is True
    assert summary["cloud"] == cron.sim.cloud_name
    assert "password" not in json.dumps(summary).lower()
    assert run.named("notify.sent")[0]["attempts"] == 2
    # The report on disk says the same.
    report = json.loads(Path(done["report"]).read_text())
    assert report["fingerprint"] == done["fingerprint"]
    assert report["verify"] == "passed"
    assert report["promotion"] == {"promoted": True, "name": done["image_name"], "rotated": []}


def test_a_failed_boot_tests_webhook_names_the_image_it_kept(
        cron: Cron, receiver: WebhookReceiver) -> None:
    receiver.responses.clear()
    cron.sim.faults.add_guest_scenario({"no_password": True}, name="-verify$", times=1)
    spec = cron.spec(notify={"url": receiver.url, "on": ["failure"]})
    run = cron.build(spec)
    assert run.exit_code == 1, run.why
    [summary] = receiver.delivered
    assert (summary["stage"], summary["verify"], summary["image"]) == ("verify", "failed", None)
    [kept] = summary["kept"]
    [image] = [e["id"] for e in run.named("resource.created") if e["kind"] == "image"
               and e["name"].endswith("-image")]
    assert kept.startswith(f"image {image} (")


def test_failed_build_is_posted(cron: Cron, receiver: WebhookReceiver) -> None:
    receiver.responses.clear()
    spec = cron.spec(notify={"url": receiver.url, "on": ["failure"]},
                     windows={"iso_image": "no-such-iso"})
    run = cron.build(spec)
    assert run.exit_code == 2
    [summary] = receiver.delivered
    assert summary["result"] == "failure" and "no-such-iso" in summary["reason"]


def test_metrics_file_is_valid_prometheus_text_and_success_is_not_posted_unasked(
        cron: Cron, tmp_path: Path, receiver: WebhookReceiver) -> None:
    metrics = tmp_path / "osbuild.prom"
    spec = cron.spec(notify={"url": receiver.url, "on": ["failure"]})
    run = cron.build(spec, extra=("--metrics-file", str(metrics)))
    assert run.exit_code == 0, run.why
    assert receiver.statuses == []  # the spec asked for failures only
    skip = cron.build(spec, extra=("--metrics-file", str(metrics), "--if-changed"))
    assert skip.exit_code == 0 and skip.named("build.skipped")
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    labels = {"family": "ws2022-standard", "cloud": cron.sim.cloud_name}

    def value(name: str, **extra: str) -> float:
        for sample in families[name].samples:
            if sample.labels == {**labels, **extra}:
                return float(sample.value)
        raise AssertionError(f"no {name} sample for {labels | extra}")

    assert value("osbuild_last_build_result") == 1
    assert value("osbuild_last_build_duration_seconds") == pytest.approx(
        run.success["duration"], abs=1)
    assert value("osbuild_last_success_timestamp_seconds") > 0
    assert value("osbuild_builds", result="success") == 1
    assert value("osbuild_builds", result="skipped") == 1


def test_spec_clouds_build_concurrently_each_with_its_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    with SimCloud(speed=SPEED, work_pace=WORK_PACE) as east, \
            SimCloud(speed=SPEED, work_pace=WORK_PACE) as west:
        clouds_yaml = tmp_path / "clouds.yaml"
        clouds_yaml.write_text(yaml.safe_dump({"clouds": {
            "east": east.cloud_config(), "west": west.cloud_config()}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
        monkeypatch.delenv("OS_CLOUD", raising=False)
        cloud = Cloud(east, tmp_path, clouds_yaml, capsys)
        spec = cloud.spec(clouds=["east", "west"])
        capsys.readouterr()
        code = main(["build", str(spec), "--json",
                     "--state-dir", str(tmp_path / "state")])
        out, err = capsys.readouterr()
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        done = {e["build_id"]: e for e in events if e["event"] == "build.succeeded"}
        started = [e for e in events if e["event"] == "build.started"]
        assert sorted(e["cloud"] for e in started) == ["east", "west"]
        # Concurrently: both had started before either finished.
        names = [e["event"] for e in events]
        assert names.index("build.succeeded") > max(
            i for i, e in enumerate(events) if e["event"] == "build.started")
        reports = [json.loads(Path(d["report"]).read_text()) for d in done.values()]
        assert sorted(r["cloud"] for r in reports) == ["east", "west"]
        for sim, name in ((east, "east"), (west, "west")):
            images = [i for i in sim.resources()["images"] if not i.get("seeded")]
            [report] = [r for r in reports if r["cloud"] == name]
            assert [i["id"] for i in images] == [report["image"]["id"]]


def test_build_outlives_its_keystone_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: Any) -> None:
    ttl = 1800.0  # simulated seconds: half an hour, against a build of a few hours
    with SimCloud(speed=SPEED, token_ttl=ttl) as sim:  # the guest's real pace
        clouds_yaml = sim.write_clouds_yaml(tmp_path / "clouds.yaml")
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
        cloud = Cloud(sim, tmp_path, clouds_yaml, capsys)
        run = cloud.build(cloud.spec(), extra=("--state-dir", str(tmp_path / "state")))
        assert run.exit_code == 0, run.why
        # The build outlived several tokens; the cloud refused each expired one and the
        # client authenticated again without the build noticing.
        lifetimes = run.success["duration"] / ttl
        assert lifetimes > 2
        assert sim.identity.issued >= int(lifetimes)
        assert cloud.leftovers(keep={run.success["image_id"]}) == []
