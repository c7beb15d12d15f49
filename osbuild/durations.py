"""Durations as operators read and write them: ``2h14m``, ``90m``, ``45s``."""

from __future__ import annotations

import re
from typing import Any


def format_duration(seconds: float) -> str:
    """``2h14m`` for 8040 seconds, ``3d4h`` for 273600; ``0s`` below one second.

    Every message uses this form, and ``parse_duration`` reads it back (image ages and
    ``refresh.max_age`` run to days and weeks, where ``1104h`` would be hard to read).
    """
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


_DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``90m``, ``4h``, ``1h30m``, ``45s``, ``2d`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90m, 4h or 1h30m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not value.strip() or not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration like 90m, 4h or 1h30m")
        days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = float(days * 86400 + hours * 3600 + minutes * 60 + secs)
    else:
        raise ValueError("expected a duration like 90m, 4h or 1h30m")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds
