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


def test_a_call_the_cloud_did_not_answer_is_told_each_time_it_is_tried_again() -> None:
    # A hung API kept a build silent for minutes: every try waited out api_timeout and was
    # sent again without a word (an outside tryout, session 32).
    import keystoneauth1.exceptions as ksa_exc

    from osbuild.cloud.retry import reporting_unanswered

    told: list[str] = []
    call, calls = failing(ksa_exc.ConnectTimeout("Request to http://nova/servers timed out"),
                          http(503), ConnectionError("reset by peer"))
    with reporting_unanswered(told.append):
        assert retrying(call, clock=Clock(1000.0)) == "ok"
    assert len(calls) == 4
    # The 503 is an answer; the timeout and the reset are not.
    assert told == [
        "the cloud did not answer (ConnectTimeout: Request to http://nova/servers timed "
        "out); trying again, attempt 2 of 6",
        "the cloud did not answer (ConnectionError: reset by peer); trying again, attempt 4 "
        "of 6"]
    # Outside the block (another build's thread, a later call) nothing is told.
    call, _calls = failing(ConnectionError("reset"))
    assert retrying(call, clock=Clock(1000.0)) == "ok"
    assert len(told) == 2


def test_a_cancelled_build_tries_a_call_no_more() -> None:
    import threading

    cancel = threading.Event()
    calls: list[int] = []

    def hung() -> str:
        calls.append(1)
        cancel.set()  # Ctrl-C came while this try waited for an answer
        raise ConnectionError("timed out")

    with pytest.raises(ConnectionError):
        retrying(hung, clock=Clock(1000.0), cancel=cancel)
    assert len(calls) == 1
