"""The install watcher on the console: a routine re-ask is no warning, lost lines are."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from osbuild.pipeline.context import BuildContext, MediaFacts
from osbuild.pipeline.events import EventName
from osbuild.pipeline.steps.watch_install import _Watcher
from osbuild_sim.console import CONSOLE_CAP
from tests.cloud.test_console import active_server, reboot_lines
from tests.pipeline.test_runner import make_ctx


def _watching(tmp_path: Path, sim: Any, conn: Any) -> tuple[_Watcher, list[str]]:
    server = active_server(sim, conn)
    ctx: BuildContext = make_ctx(tmp_path)
    ctx.conn = conn
    ctx.server_id = server.id
    ctx.resumed_media = MediaFacts(nonce="0" * 32, guest_stages=("cleanup",), size=0)
    warnings: list[str] = []
    ctx.bus.subscribe(lambda e: warnings.append(str(e.fields.get("message")))
                      if e.name is EventName.WARNING else None)
    return _Watcher(ctx), warnings


def _write(sim: Any, watcher: _Watcher, lines: list[str]) -> None:
    with sim.world.lock:
        for line in lines:
            sim.world.servers[watcher.server_id].console.write_line(line)


def test_a_reboot_that_makes_the_watcher_ask_again_is_no_warning(
        tmp_path: Path, sim: Any, conn: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Seen on every few `osbuild demo` runs: "console: more than 39 lines since the last
    # poll; asking for 160" after cleanup's reboot, though 4 lines had come. The smallest
    # window started on an older "Booting from Hard Disk...", the line the transcript ended
    # with, so it also fitted one line on; the larger window settled it and lost nothing.
    watcher, warnings = _watching(tmp_path, sim, conn)
    _write(sim, watcher, [*reboot_lines(0), *(f"marker {n}" for n in range(34))])
    watcher._read_console()
    watcher._read_console()  # nothing new: the next window is the smallest
    _write(sim, watcher, reboot_lines(1))
    watcher._read_console()
    _write(sim, watcher, ["resumed after reboot"])
    with caplog.at_level(logging.DEBUG, logger="osbuild.pipeline.steps.watch_install"):
        read = watcher._read_console()
    assert read.new_lines == ("resumed after reboot",) and read.polls == 2
    assert warnings == []
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "asking for 160" in caplog.records[0].getMessage()


def test_lines_scrolled_past_everything_the_console_keeps_are_a_warning(
        tmp_path: Path, sim: Any, conn: Any) -> None:
    watcher, warnings = _watching(tmp_path, sim, conn)
    _write(sim, watcher, ["early"])
    watcher._read_console()
    _write(sim, watcher, [f"flood {i:06d} " + "x" * 80 for i in range(2 * CONSOLE_CAP // 90)])
    read = watcher._read_console()
    assert read.lost
    assert warnings == [
        f"console: lines were lost: the whole log Nova returns ({read.held} lines) no longer "
        "reaches back to the last line read, so what the guest printed in between, markers "
        "too, was never seen (or QEMU restarted and began a new log); console.log marks the "
        "gap"]
    _write(sim, watcher, ["after"])
    watcher._read_console()
    assert len(warnings) == 1  # once per gap


def test_stages_whose_markers_were_never_read_are_a_warning_at_success(
        tmp_path: Path, sim: Any, conn: Any) -> None:
    # The cloud's API hung for minutes; the guest ran on and the console log moved past
    # firstlogon..cleanup. The build stood (sysprep comes only after them) with no word
    # that five stages were never seen (an outside tryout, session 32).
    from osbuild.pipeline.context import StageRecord

    watcher, warnings = _watching(tmp_path, sim, conn)
    watcher.order = ("winpe", "specialize", "firstlogon", "virtio", "updates", "cleanup",
                     "sysprep")
    watcher.ctx.stages[:] = [StageRecord(s, started=0.0) for s in ("winpe", "specialize",
                                                                  "sysprep")]
    watcher._warn_unseen()
    assert warnings == [
        "the console never showed guest stage(s) firstlogon, virtio, updates, cleanup: their "
        "markers had left the console log when it was read again; the guest ran them (it "
        "starts sysprep only after them), so the image stands, without their times"]
    # A refresh (no Setup) or a resumed build (its first stage is where it resumed): the
    # stages before the first one this run saw are none of its business.
    warnings.clear()
    watcher.ctx.stages[:] = [StageRecord(s, started=0.0) for s in ("updates", "cleanup",
                                                                  "sysprep")]
    watcher._warn_unseen()
    assert warnings == []
