"""Which failures are repeated: transient ones always, a lost page marker for listings."""

from __future__ import annotations

import pytest
from openstack import exceptions as sdk_exc

from osbuild.cloud.clock import Clock
from osbuild.cloud.retry import retrying


def failing(*errors: Exception):  # type: ignore[no-untyped-def]
    queue = list(errors)
    calls = []

    def call() -> str:
        calls.append(1)
        if queue:
            raise queue.pop(0)
        return "ok"

    return call, calls


def http(status: int, message: str = "boom") -> sdk_exc.HttpException:
    exc = sdk_exc.HttpException(message=message)
    exc.status_code = status
    return exc


def test_transient_errors_are_repeated() -> None:
    call, calls = failing(http(503), http(429), ConnectionError("reset"))
    assert retrying(call, clock=Clock(1000.0)) == "ok"
    assert len(calls) == 4


def test_client_errors_are_not_repeated() -> None:
    call, calls = failing(http(400, "bad mapping"))
    with pytest.raises(sdk_exc.HttpException):
        retrying(call, clock=Clock(1000.0))
    assert len(calls) == 1


def test_lost_marker_restarts_a_listing_only() -> None:
    call, calls = failing(http(400, "marker 1234 could not be found."))
    assert retrying(call, clock=Clock(1000.0), listing=True) == "ok"
    assert len(calls) == 2
    call, calls = failing(http(400, "marker 1234 could not be found."))
    with pytest.raises(sdk_exc.HttpException):
        retrying(call, clock=Clock(1000.0))
    assert len(calls) == 1


def test_retry_after_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("osbuild.cloud.retry.time.sleep", slept.append)

    class Response:
        headers = {"Retry-After": "7"}

    exc = http(429)
    exc.response = Response()  # type: ignore[assignment]
    call, _calls = failing(exc)
    assert retrying(call, clock=Clock(1.0)) == "ok"
    assert slept == [7.0]
