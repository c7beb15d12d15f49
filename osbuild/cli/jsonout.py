"""What `--json` writes on stdout: one JSON object per line, and whether one told the outcome.

The CLI's last resort needs the second part: a command that stops on an error before it wrote
its result or a build's end (an invalid spec, an unknown cloud, a refused login) still leaves
its log pipeline one line saying so (:func:`print_error`), instead of output only on stderr,
which a shipper reading stdout never sees.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

_written = threading.Event()


def print_json(obj: Any, stream: TextIO | None = None, *, outcome: bool = True) -> None:
    """``obj`` as one line on stdout (``stream``), flushed. ``outcome``: the line tells how
    the command ended (a result, a build's end); a progress event does not, and an error
    after it still gets its `error` line (a refused run's webhook sends `notify.sent`)."""
    out = stream or sys.stdout
    out.write(json.dumps(obj, default=str, sort_keys=False) + "\n")
    out.flush()
    if outcome:
        _written.set()


def forget() -> None:
    """A new command starts (tests run several in one process)."""
    _written.clear()


def written() -> bool:
    """Whether this command has written a JSON line on stdout that tells how it ended."""
    return _written.is_set()


def print_error(command: str, errors: Sequence[str], exit_code: int) -> None:
    """The `error` event: what stopped ``command`` before it wrote any JSON (its lines are
    the ones stderr shows, already redacted)."""
    from osbuild.pipeline.events import Event, EventName  # the package loads the SDK

    event = Event(EventName.ERROR, "", "", {"command": command, "exit_code": exit_code,
                                            "errors": list(errors)})
    with contextlib.suppress(BrokenPipeError, ValueError):  # the reader went away
        print_json(event.as_json())
