"""The human view: on a terminal, the live table's elapsed time ticks between events."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from osbuild.cli.output import HumanView
from osbuild.pipeline.events import Event


def test_live_elapsed_time_ticks_between_events() -> None:
    screen = io.StringIO()
    view = HumanView(Console(file=screen, force_terminal=True, width=120))
    try:
        view(Event("build.started", "20261126t031500-a1b2c3", "ws2022-standard", {}))
        view(Event("step.started", "20261126t031500-a1b2c3", "ws2022-standard",
                   {"step": "install"}))
        time.sleep(2.3)  # no events: a long install stage
        shown = screen.getvalue()
    finally:
        view.close()
    # Elapsed time as every duration prints (2h14m): 0s at the start, 2s with no new event.
    assert re.search(r"\b0s\b", shown)
    assert re.search(r"\b2s\b", shown), shown[-500:]
