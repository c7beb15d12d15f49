"""A small trend of the last builds' durations: text blocks for a terminal, SVG for a page."""

from __future__ import annotations

from collections.abc import Callable

BLOCKS = "▁▂▃▄▅▆▇█"


def _scaled(values: list[float], steps: int) -> list[int]:
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return [steps // 2 for _ in values]
    return [round((v - low) / (high - low) * steps) for v in values]


def trend_of(kind: str | None, count: int = 2) -> str:
    """What a trend's builds are: one kind only (a refresh takes a fraction of a full build);
    ``count`` of them (one reads "refresh")."""
    if count == 1:
        return "refresh" if kind == "refresh" else "full build"
    return "refreshes" if kind == "refresh" else "full builds"


def span_of(durations: list[float], shown: Callable[[float], str]) -> str:
    """``1h2m-1h9m``, or one duration when they are all the same (a single build)."""
    low, high = shown(min(durations)), shown(max(durations))
    return low if low == high else f"{low}-{high}"


def sparkline(values: list[float]) -> str:
    """``▁▃█``: one block per build, oldest first, from the shortest to the longest."""
    if not values:
        return ""
    return "".join(BLOCKS[i] for i in _scaled(values, len(BLOCKS) - 1))


def spark_points(values: list[float], *, width: float = 100.0, height: float = 20.0,
                 pad: float = 2.0) -> str:
    """An SVG polyline's ``points``: time to the right, longer builds higher."""
    if not values:
        return ""
    if len(values) == 1:
        values = values * 2
    levels = _scaled(values, 1000)
    step = (width - 2 * pad) / (len(values) - 1)
    return " ".join(f"{pad + i * step:.1f},{height - pad - level / 1000 * (height - 2 * pad):.1f}"
                    for i, level in enumerate(levels))
