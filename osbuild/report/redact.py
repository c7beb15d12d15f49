"""Every string a page shows passes here: secrets out, control characters made visible."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from osbuild.unattended.notify import scrub

REDACTED = "[redacted]"

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


class Redactor:
    """Removes the build's known secrets and anything shaped like one from text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first: a secret containing another is removed whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        value = _PRODUCT_KEY.sub(REDACTED, value)
        value = _SECRET_ASSIGNMENT.sub(lambda m: m["key"] + REDACTED, value)
        return _SECRET_ELEMENT.sub(lambda m: m["open"] + (REDACTED if m["value"] else ""), value)

    def mapping(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """Secret-looking keys dropped (the webhook summary's rule), values redacted."""
        return {k: self.text(v) if isinstance(v, str) else v for k, v in scrub(value).items()}


def visible(value: str) -> str:
    """Control characters as ``\\x1b`` text: a page shows them, a terminal never runs them."""
    return "".join(
        ch if ch.isprintable() or ch == "\t" else f"\\x{ord(ch):02x}" if ord(ch) < 256
        else f"\\u{ord(ch):04x}"
        for ch in value)
