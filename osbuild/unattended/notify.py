"""Webhook notification: POST a JSON build summary, retried a bounded number of times."""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import tenacity

from osbuild import __version__
from osbuild.errors import InvalidInput
from osbuild.pipeline.events import EventName
from osbuild.redact import scrub  # never sent: a webhook receiver is a chat room

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class NotifyResult:
    delivered: bool
    attempts: int
    status: int | None = None  # the last HTTP status, None when no response came back
    error: str | None = None


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Fatal(Exception):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def should_notify(on: Iterable[str], succeeded: bool) -> bool:
    return ("success" if succeeded else "failure") in set(on)


def check_url(url: str) -> str:
    """Only http(s): urllib would also open file:// and ftp:// URLs."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(["notify.url: must be an http or https URL"])
    return url


def redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries often embed the access token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/..."


def build_summary(
    *,
    build_id: str,
    family: str,
    cloud: str,
    succeeded: bool,
    reason: str | None = None,
    stage: str | None = None,
    image_id: str | None = None,
    image_name: str | None = None,
    fingerprint: str | None = None,
    verify: str | None = None,
    promoted: bool | None = None,
    duration_seconds: float | None = None,
    exit_code: int | None = None,
    finished_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "event": str(EventName.BUILD_SUCCEEDED if succeeded else EventName.BUILD_FAILED),
        "result": "success" if succeeded else "failure",
        "build_id": build_id,
        "family": family,
        "cloud": cloud,
        "image": {"id": image_id, "name": image_name} if image_id else None,
        "reason": reason,
        "stage": stage,
        "fingerprint": fingerprint,
        "verify": verify,
        "promoted": promoted,
        "duration_seconds": duration_seconds,
        "exit_code": exit_code,
        "finished_at": (finished_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "osbuild_version": __version__,
    }
    if extra:
        summary.update(extra)
    return scrub(summary)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _without_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """The URL without ``user:password@`` and the Basic auth header that carries them:
    urllib would take ``user:password@host`` for the host name."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    token = base64.b64encode(userinfo.encode()).decode()
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token}"}


def _post_once(url: str, body: bytes, timeout: float) -> int:
    url, auth = _without_userinfo(url)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"osbuild/{__version__}",
            **auth,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        if status in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {status}", status, retry_after) from None
        raise _Fatal(f"HTTP {status}", status) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"cannot connect: {reason}", None, None) from None


class _Cancelled(Exception):
    """A signal came while waiting to retry."""


def _cancellable_sleep(cancel: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if cancel.is_set() or cancel.wait(seconds):
            raise _Cancelled
    return sleep


def send(
    url: str,
    summary: Mapping[str, Any],
    *,
    attempts: int = 4,
    timeout: float = 10.0,
    backoff: float = 2.0,
    max_retry_after: float = MAX_RETRY_AFTER,
    sleep: Callable[[float], None] = time.sleep,
    cancel: threading.Event | None = None,
) -> NotifyResult:
    """POST ``summary``; retries connection errors, 408/429/5xx. Never raises for delivery.

    A ``Retry-After`` header sets the wait (capped at ``max_retry_after``), otherwise the
    wait grows exponentially from ``backoff`` seconds. A notification failure must not
    turn a good build into a failed one: the caller logs the result. Once ``cancel`` is set
    (SIGINT/SIGTERM) there is no further attempt: minutes of retries would hold a stopping
    run past systemd's stop timeout.
    """
    check_url(url)
    body = json.dumps(scrub(summary), sort_keys=True).encode()
    exponential = tenacity.wait_exponential(multiplier=backoff, max=60)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, max_retry_after)
        return float(exponential(state))

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=wait,
        retry=tenacity.retry_if_exception_type(_Retryable),
        sleep=sleep if cancel is None else _cancellable_sleep(cancel),
        reraise=True,
    )
    count = 0
    try:
        for attempt in retrying:
            with attempt:
                count = attempt.retry_state.attempt_number
                status = _post_once(url, body, timeout)
    except _Cancelled:
        log.info("webhook %s: not retried, the run is stopping", redact_url(url))
        return NotifyResult(False, count, None, "not retried: the run is stopping")
    except (_Retryable, _Fatal) as exc:
        # INFO, not WARNING: the caller reports it (a `warning` event); logging's line on
        # stderr said it again, and broke `--json 2>&1`'s one JSON object per line.
        log.info("webhook %s not delivered after %d attempt(s): %s", redact_url(url), count, exc)
        return NotifyResult(False, count, exc.status, str(exc))
    log.info("webhook %s delivered (HTTP %d)", redact_url(url), status)
    return NotifyResult(True, count, status)
