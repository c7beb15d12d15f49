"""The Jinja environment both pages render with: autoescape on, every value redacted."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from osbuild.durations import format_duration
from osbuild.redact import Redactor, visible


def format_bytes(size: Any) -> str:
    if not isinstance(size, int | float):
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _duration(seconds: Any) -> str:
    """``2h14m``; ``-`` for what a report does not record (None, or a missing key)."""
    if not isinstance(seconds, int | float):
        return "-"
    return format_duration(max(seconds, 0))


_REDACTOR = "_redactor"


@pass_context
def _shown(context: Context, value: Any) -> Any:
    """Every ``{{ value }}`` passes here before autoescaping: no template can forget it."""
    if isinstance(value, str):
        return visible(context[_REDACTOR].guest_text(value))
    return value


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("osbuild.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=_shown,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = _duration
    env.filters["bytes"] = format_bytes
    return env


def render_page(template: str, redactor: Redactor, **context: Any) -> str:
    """Render ``template``; every string it prints is redacted and shown as plain text."""
    return _environment().get_template(template).render(**context, **{_REDACTOR: redactor})
