"""The verify step's console read: the install watcher's reader, lost lines a warning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from osbuild.cloud.transcript import Transcript
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.steps.verify_image import CONSOLE_LINES, console_reader, read_console
from osbuild_sim.console import CONSOLE_CAP
from tests.cloud.test_console import active_server, reboot_lines
from tests.pipeline.test_runner import make_ctx


def _verifying(tmp_path: Path, sim: Any, conn: Any) -> tuple[BuildContext, Any, list[str]]:
    server = active_server(sim, conn)
    ctx: BuildContext = make_ctx(tmp_path)
    ctx.conn = conn
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message")))
                      if e.name is EventName.WARNING else None)
    return ctx, server, warnings


def _write(sim: Any, server_id: str, lines: list[str]) -> None:
    with sim.world.lock:
        for line in lines:
            sim.world.servers[server_id].console.write_line(line)


def test_lines_lost_to_the_consoles_cap_are_one_warning(tmp_path: Path, sim: Any,
                                                        conn: Any) -> None:
    # verify read the console without ever saying that a flood scrolled lines (cloudbase-
    # init's "Plugins execution done" among them) past all Nova keeps; the check then
    # failed on its deadline with no word of why.
    ctx, server, warnings = _verifying(tmp_path, sim, conn)
    reader = console_reader(ctx, server.id, Transcript())
    _write(sim, server.id, ["early"])
    assert read_console(ctx, reader) == ("early",)
    _write(sim, server.id, [f"flood {i:06d} " + "x" * 80 for i in range(2 * CONSOLE_CAP // 90)])
    read_console(ctx, reader)
    [warning] = warnings
    assert re.fullmatch(
        r"console: lines were lost: the whole log Nova returns \(\d+ lines\) no longer "
        r"reaches back to the last line read, so what the guest printed in between, lines "
        r"the checks look for too, was never seen \(or QEMU restarted and began a new log\); "
        r"verify-console.log marks the gap", warning)
    _write(sim, server.id, ["after"])
    assert read_console(ctx, reader) == ("after",)
    assert len(warnings) == 1  # once per gap


def test_a_reboot_is_no_warning_and_later_polls_ask_for_little(tmp_path: Path, sim: Any,
                                                               conn: Any) -> None:
    # The reader asked for all 2000 lines at every poll (a fixed window); it now follows
    # what came, as the install watcher's does, and a reboot's re-ask loses nothing.
    ctx, server, warnings = _verifying(tmp_path, sim, conn)
    reader = console_reader(ctx, server.id, Transcript())
    _write(sim, server.id, [*reboot_lines(0), *(f"cloudbase-init {n}" for n in range(300))])
    read_console(ctx, reader)
    _write(sim, server.id, [*reboot_lines(1), "Plugins execution done"])
    assert read_console(ctx, reader)[-1] == "Plugins execution done"
    assert reader.lines < CONSOLE_LINES and warnings == []
    _write(sim, server.id, ["password posted"])
    assert read_console(ctx, reader) == ("password posted",)
    assert reader.lines == 40
