"""Which API failures are worth repeating, and the tenacity policy that repeats them.

Only idempotent calls (reads, deletes, polls, updates of a known resource) go through
:func:`retrying`. Creates are repeated only behind a lookup (see the steps that create).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import keystoneauth1.exceptions as ksa_exc
from openstack import exceptions as sdk_exc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from osbuild.cloud.clock import Clock

T = TypeVar("T")

# What the cloud layer's callers catch, so that only osbuild/cloud names openstacksdk: an HTTP
# error answer of any service, a name that several resources share, and anything the SDK
# raises.
HttpError = sdk_exc.HttpException
DuplicateResource = sdk_exc.DuplicateResource
SDKError = sdk_exc.SDKException
ClientError = ksa_exc.ClientException  # keystoneauth: connection, auth and HTTP failures

RETRIABLE_STATUS = {408, 429, 500, 502, 503, 504}


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(exc, "http_status", None)
    return int(status) if status is not None else None


_CONNECTION_ERRORS = (
    ksa_exc.ConnectFailure,
    ksa_exc.ConnectionError,
    ksa_exc.RetriableConnectionFailure,
    ConnectionError,
)
# This thread's listener for calls the cloud did not answer (reporting_unanswered).
_unanswered = threading.local()


@contextlib.contextmanager
def reporting_unanswered(report: Callable[[str], None]) -> Iterator[None]:
    """While inside, this thread's calls through :func:`retrying` tell ``report`` each time
    the cloud did not answer one (a timeout, a refused or reset connection) and it is tried
    again: a hung API once kept a build silent for minutes, each try waiting api_timeout."""
    previous = getattr(_unanswered, "report", None)
    _unanswered.report = report
    try:
        yield
    finally:
        _unanswered.report = previous


def _no_answer(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, _CONNECTION_ERRORS):
            return True
        exc = exc.__cause__ if isinstance(exc, sdk_exc.SDKException) else None
    return False


def is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the request itself: retry if the call is safe."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, ksa_exc.http.HttpError | sdk_exc.HttpException):
        return status_of(exc) in RETRIABLE_STATUS
    if isinstance(exc, sdk_exc.SDKException) and exc.__cause__ is not None:
        # openstacksdk wraps what went wrong in a plain SDKException ("Image creation
        # failed: ..." around a reset connection): judge the cause.
        return is_transient(exc.__cause__)
    return False


def is_quota_error(exc: BaseException) -> bool:
    """The cloud refused a create for lack of quota: Cinder and Glance say 413, Nova 403."""
    status = status_of(exc)
    if status == 413:
        return True
    return status == 403 and "quota" in api_message(exc).lower()


def api_message(exc: BaseException) -> str:
    """What the service said, without openstacksdk's "HttpException: 413: ... for url" prefix."""
    details = getattr(exc, "details", None) or getattr(exc, "message", None) or str(exc)
    lines = str(details).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, sdk_exc.NotFoundException) or status_of(exc) == 404


def retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _WaitHonouringRetryAfter:
    """Back-off in cloud seconds (Retry-After too), slept in real seconds."""

    def __init__(self, scale: float) -> None:
        self._backoff = wait_exponential_jitter(initial=1, max=30, jitter=1)
        self._scale = scale

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after(exc) if exc else None
        delay = hinted if hinted is not None else self._backoff(state)
        return delay / self._scale


def is_lost_marker(exc: BaseException) -> bool:
    """A paginated listing whose page marker was deleted meanwhile (Glance answers 400).

    Other builds delete their images while we page through a shared listing; starting
    the listing again is the remedy.
    """
    return status_of(exc) == 400 and "marker" in str(exc).lower()


def retrying(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 6,
    clock: Clock | None = None,
    cancel: threading.Event | None = None,
    listing: bool = False,
    **kwargs: Any,
) -> T:
    """Call ``fn`` and repeat it on transient failures (5xx, 429 with Retry-After, resets).

    ``listing``: ``fn`` lists a paginated collection; a lost page marker restarts it.
    ``clock``: the session's clock (:func:`osbuild.cloud.clock.session_clock`); back-offs are
    cloud seconds.
    """
    def sleep(seconds: float) -> None:
        # A cancelled build stops waiting at once; the caller then sees the cancellation.
        if cancel is not None:
            cancel.wait(seconds)
        else:
            time.sleep(seconds)

    def tell_unanswered(state: RetryCallState) -> None:
        report = getattr(_unanswered, "report", None)
        exc = state.outcome.exception() if state.outcome else None
        if report is not None and _no_answer(exc):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            report(f"the cloud did not answer ({type(exc).__name__}: {first}); trying again, "
                   f"attempt {state.attempt_number + 1} of {attempts}")

    stop = stop_after_attempt(attempts)
    policy = Retrying(
        retry=retry_if_exception(
            (lambda e: is_transient(e) or is_lost_marker(e)) if listing else is_transient
        ),
        # A cancelled build tries no more: each try of a hung API waits out api_timeout.
        stop=stop | stop_when_event_set(cancel) if cancel is not None else stop,
        wait=_WaitHonouringRetryAfter(clock.scale if clock is not None else 1.0),
        reraise=True,
        sleep=sleep,
        before_sleep=tell_unanswered,
    )
    return policy(fn, *args, **kwargs)
