"""Secrets out of everything osbuild writes or prints: one build's values, and their shapes.

A build's :class:`Redactor` holds its secret values (the spec's secrets, the generated
Windows password, the cloud's credentials), collected once, and every sink passes text
through it: the console transcripts, report.json and report.html, events (``--json`` and
the human view), the state file and failure reasons. Whatever a build adds is also known
to :data:`PROCESS`, which the CLI's log handler and error printing use: they cannot tell
which build a line belongs to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from html import escape as html_escape
from typing import Any, TypeVar

REDACTED = "[redacted]"
# Shorter values are not scrubbed: "a" or "kms" would turn ordinary words into [redacted].
MIN_SECRET_LENGTH = 4
# Windows' answer-file encoding appends the element's name before base64 of UTF-16LE
# (osbuild.media.unattend.obfuscate): a guest printing its answer file shows these.
_ANSWER_FILE_SUFFIXES = ("", "Password", "AdministratorPassword")

# A Windows product key anywhere in a line (the spec's, a GVLK, one the guest printed).
_PRODUCT_KEY = re.compile(r"\b[0-9A-Z]{5}(?:-[0-9A-Z]{5}){4}\b")
# ``password: x``, ``AdministratorPassword=x``, ``"token": "x"``: keep the key, drop the value.
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>\b\w*(?:password|passwd|secret|token|product_?key)\w*[\"']?\s*[:=]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|\S+)",
    re.I,
)
# XML answer files: <Password><Value>x</Value>, <ProductKey>x</ProductKey>.
_SECRET_ELEMENT = re.compile(
    r"(?P<open><(?P<tag>\w*(?:Password|ProductKey|Key)\w*)>(?:\s*<Value>)?)"
    r"(?P<value>[^<]*)", re.I)
# Keys whose values are never shown or sent, whatever the value looks like.
SECRET_KEY = re.compile(r"password|secret|token|credential|private|product_key|auth", re.I)

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def encodings(value: str) -> set[str]:
    """``value`` as it may reach a sink: plain, JSON- and XML-escaped, as the answer file
    carries it (base64 of UTF-16LE), and as UTF-16LE text read as bytes."""
    forms = {value, json.dumps(value)[1:-1], html_escape(value, quote=False),
             html_escape(value), value.encode("utf-16-le").decode("latin-1")}
    forms.update(base64.b64encode((value + suffix).encode("utf-16-le")).decode("ascii")
                 for suffix in _ANSWER_FILE_SUFFIXES)
    return forms


class Redactor:
    """Removes known secret values, and anything shaped like a secret, from text."""

    def __init__(self, secrets: Iterable[str | None] = (), *,
                 forward: Redactor | None = None) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._forward = forward
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Learn values; too short ones are ignored (see :data:`MIN_SECRET_LENGTH`)."""
        fresh = {form for s in secrets if s and len(s.strip()) >= MIN_SECRET_LENGTH
                 for form in encodings(s) if len(form) >= MIN_SECRET_LENGTH}
        with self._lock:
            self._values = self._values | fresh  # replaced, not changed: readers take no lock
        if self._forward is not None:
            self._forward.add(*secrets)

    def text(self, value: str) -> str:
        """Known values and anything shaped like a product key taken out."""
        return _PRODUCT_KEY.sub(REDACTED, self._known(value))

    def guest_text(self, value: str) -> str:
        """:meth:`text`, and the value after ``password=``-like keys and in answer-file
        elements: for what a guest printed (console transcripts, the pages). Not for
        osbuild's own messages, whose ``windows.product_key: ...`` names a field."""
        value = _SECRET_ASSIGNMENT.sub(lambda m: m["key"] + REDACTED, self.text(value))
        return _SECRET_ELEMENT.sub(lambda m: m["open"] + (REDACTED if m["value"] else ""), value)

    def _known(self, value: str) -> str:
        """Every occurrence of every known value, overlapping ones merged into one mark."""
        spans: list[tuple[int, int]] = []
        for secret in self._values:
            at = value.find(secret)
            while at >= 0:
                spans.append((at, at + len(secret)))
                at = value.find(secret, at + 1)
        if not spans:
            return value
        out, done = [], 0
        for start, end in sorted(spans):
            if end <= done:
                continue
            if start >= done:  # else it overlaps the last mark, which grows to cover it
                out += [value[done:start], REDACTED]
            done = end
        out.append(value[done:])
        return "".join(out)

    def deep(self, value: T) -> T:
        """Every string in nested dicts, lists and tuples redacted (keys kept)."""
        return self._deep(value)  # type: ignore[no-any-return]

    def _deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self._deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._deep(v) for v in value]
        if type(value) is tuple:
            return tuple(self._deep(v) for v in value)
        return value

    def mapping(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """Secret-looking keys dropped (the webhook summary's rule), values redacted."""
        return {k: self.guest_text(v) if isinstance(v, str) else v
                for k, v in scrub(value).items()}

    def exception(self, exc: E) -> E:
        """``exc`` with its message, arguments and string attributes redacted, in place
        (and its cause's): the CLI, the report and the events all read the same object."""
        seen: set[int] = set()

        def clean(error: BaseException) -> None:
            if id(error) in seen:
                return
            seen.add(id(error))
            error.args = self.deep(error.args)
            for name, attr in list(vars(error).items()):
                if isinstance(attr, BaseException):
                    clean(attr)
                elif isinstance(attr, str | list | tuple | dict):
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(error, name, self.deep(attr))
            for linked in (error.__cause__, error.__context__):
                if linked is not None:
                    clean(linked)

        clean(exc)
        return exc



def scrub(value: Any) -> Any:
    """Drop secret-looking keys at any depth."""
    if isinstance(value, Mapping):
        return {str(k): scrub(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


# Every secret any build or connection of this process has learnt.
PROCESS = Redactor()


def remember(*secrets: str | None) -> None:
    """Values no log line or printed error of this process may show (credentials)."""
    PROCESS.add(*secrets)


def for_build(*secrets: str | None) -> Redactor:
    """One build's redactor; what it learns the process's log and error output learn too."""
    return Redactor(secrets, forward=PROCESS)


class RedactingFormatter(logging.Formatter):
    """Log lines, tracebacks included, with every secret of the process taken out; wraps
    the handler's own formatter, so its format stays."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return PROCESS.text(self.inner.format(record))


def redact_logs(logger: logging.Logger) -> None:
    """Every handler of ``logger`` (the root logger: every log line) redacts."""
    for handler in logger.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))


def visible(value: str) -> str:
    """Control characters as ``\\x1b`` text: a page shows them, a terminal never runs them."""
    return "".join(
        ch if ch.isprintable() or ch == "\t" else f"\\x{ord(ch):02x}" if ord(ch) < 256
        else f"\\u{ord(ch):04x}"
        for ch in value)
