"""Webhook: a local receiver that fails once then accepts; Retry-After; no secrets sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from osbuild.errors import InvalidInput
from osbuild.unattended import notify
from tests.support.webhook import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[Any]:
    made: list[WebhookReceiver] = []

    def make(responses: list[tuple[int, dict[str, str]]]) -> WebhookReceiver:
        made.append(WebhookReceiver(responses, path="/hooks/abc-secret-path"))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _summary() -> dict[str, Any]:
    return notify.build_summary(
        build_id="20261126t030000-aaaaaa", family="ws2022", cloud="prod", succeeded=False,
        reason="guest failure in updates", stage="updates", fingerprint="f" * 64,
        verify="skipped", promoted=False, duration_seconds=42.0, exit_code=1,
        extra={"admin_password": "hunter2", "details": {"os_token": "t0k", "ok": 1}},
    )


def test_fails_once_then_delivers(receiver: Any) -> None:
    rx = receiver([(503, {})])
    sleeps: list[float] = []
    result = notify.send(rx.url, _summary(), sleep=sleeps.append, backoff=0.5)
    assert result == notify.NotifyResult(delivered=True, attempts=2, status=200)
    assert len(rx.bodies) == 2 and rx.bodies[0] == rx.bodies[1]
    body = rx.bodies[1]
    assert body["event"] == "build.failed" and body["family"] == "ws2022"
    assert body["fingerprint"] == "f" * 64 and body["stage"] == "updates"
    assert body["details"] == {"ok": 1}
    assert "hunter2" not in json.dumps(body) and "t0k" not in json.dumps(body)
    assert rx.headers[1]["Content-Type"] == "application/json"
    assert len(sleeps) == 1


def test_retry_after_is_honoured_and_capped(receiver: Any) -> None:
    rx = receiver([(429, {"Retry-After": "7"}), (503, {"Retry-After": "9999"})])
    sleeps: list[float] = []
    result = notify.send(rx.url, {"x": 1}, sleep=sleeps.append, max_retry_after=30)
    assert result.delivered and result.attempts == 3
    assert sleeps == [7.0, 30.0]


def test_bounded_attempts_and_no_retry_on_client_error(receiver: Any) -> None:
    rx = receiver([(500, {})] * 10)
    result = notify.send(rx.url, {"x": 1}, attempts=3, sleep=lambda s: None)
    assert not result.delivered and result.attempts == 3 and result.status == 500
    assert len(rx.bodies) == 3
    rx = receiver([(404, {})])
    result = notify.send(rx.url, {"x": 1}, sleep=lambda s: None)
    assert (result.delivered, result.attempts, result.status) == (False, 1, 404)


def test_connection_refused_is_retried_then_reported() -> None:
    rx = WebhookReceiver(path="/hooks/abc-secret-path")
    url = rx.url
    rx.close()  # nothing listens on that port any more
    result = notify.send(url, {"x": 1}, attempts=2, sleep=lambda s: None, timeout=2)
    assert not result.delivered and result.attempts == 2 and result.status is None
    assert "cannot connect" in (result.error or "")


def test_only_http_urls_and_redaction() -> None:
    with pytest.raises(InvalidInput, match=r"notify\.url"):
        notify.send("file:///etc/passwd", {"x": 1})
    assert notify.redact_url("https://hooks.example.com/T0/B1/secret?k=v") == (
        "https://hooks.example.com/..."
    )
    assert notify.should_notify(["failure"], succeeded=False)
    assert not notify.should_notify(["failure"], succeeded=True)


def test_retry_after_http_date() -> None:
    assert notify.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert notify.parse_retry_after("soon") is None


def test_credentials_in_the_url_go_as_basic_auth(receiver: Any) -> None:
    # https://user:token@hooks.example.com/... (Jenkins' generic webhook, a reverse proxy's
    # basic auth): urllib took "user:token@host" for the host name, so every attempt failed
    # with "Name or service not known" and the build only logged a warning.
    rx = receiver([])
    url = rx.url.replace("http://", "http://osbuild:s%40cret@")
    result = notify.send(url, _summary(), sleep=lambda _s: None)
    assert result == notify.NotifyResult(delivered=True, attempts=1, status=200)
    [headers] = rx.headers
    assert headers["Authorization"] == "Basic b3NidWlsZDpzQGNyZXQ="  # osbuild:s@cret
    assert notify.redact_url(url) == f"http://127.0.0.1:{rx.server.server_port}/..."


def test_a_signal_stops_the_retries(receiver: Any) -> None:
    # SIGINT while waiting to retry (Retry-After: 120 s): no further attempt, at once.
    import threading
    import time

    rx = receiver([(503, {"Retry-After": "120"})] * 5)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = notify.send(rx.url, {"x": 1}, cancel=cancel)
    assert time.monotonic() - started < 30
    assert result == notify.NotifyResult(False, 1, None, "not retried: the run is stopping")
    assert len(rx.bodies) == 1
    # A run already stopping still sends once (the interrupted build's own webhook).
    result = notify.send(rx.url, {"x": 2}, cancel=cancel)
    assert (result.delivered, result.attempts) == (False, 1) and len(rx.bodies) == 2


def test_a_signal_during_the_webhooks_retries_makes_the_run_exit_130(
        tmp_path: Any) -> None:
    import threading

    import yaml

    from osbuild.pipeline import BuildResult, CancelToken, EventBus
    from osbuild.resources import examples_dir
    from osbuild.spec import load_spec
    from osbuild.unattended.jobs import report_outcome

    rx = WebhookReceiver([(503, {"Retry-After": "120"})] * 5)
    try:
        data = yaml.safe_load((examples_dir() / "ws2022-standard.yaml").read_text())
        data["notify"] = {"url": rx.url, "on": ["success"]}
        (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(data))
        spec = load_spec(path)
        result = BuildResult(build_id="20261202t000000-aaaaaa", family=spec.name,
                             cloud="c", succeeded=True, image_id="i", image_name="n")
        cancel = CancelToken()
        threading.Timer(0.3, cancel.cancel, args=("SIGTERM",)).start()
        seen: list[Any] = []
        bus = EventBus()
        bus.subscribe(seen.append)
        report_outcome(result=result, spec=spec, metrics_file=None, bus=bus, cancel=cancel)
    finally:
        rx.close()
    assert len(rx.bodies) == 1
    assert (result.interrupted, result.exit_code) == ("SIGTERM", 130)
    [warning] = [e.fields["message"] for e in seen if e.name == "warning"]
    assert warning == "webhook not delivered after 1 attempt(s): not retried: the run is " \
                      "stopping"
