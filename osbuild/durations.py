"""Durations as operators read and write them: ``2h14m``, ``90m``, ``45s``."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """``2h14m`` for 8040 seconds; ``0s`` below one second. Every message uses this form."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
