"""The one console reader against the simulated Nova: windows, stitching, 409 and 404."""

from __future__ import annotations

from typing import Any

from osbuild.cloud.console import ConsoleReader
from osbuild.cloud.transcript import GAP_NOTE, Transcript
from osbuild_sim import guest
from osbuild_sim.console import CONSOLE_CAP
from tests.sim.conftest import run_until, server_status


def _server(sim: Any, conn: Any) -> Any:
    return conn.compute.create_server(
        name="console", flavor_id="2", networks="none",
        block_device_mapping=[{"boot_index": 0, "source_type": "blank",
                               "destination_type": "volume", "volume_size": 1,
                               "delete_on_termination": True}])


def active_server(sim: Any, conn: Any) -> Any:
    """A running server whose console is empty (what its firmware printed is gone) and
    stays so: the firmware finds nothing to boot and halts before the console is emptied
    (under load its last line landed after the truncation, in a test's reads)."""
    server = _server(sim, conn)
    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    console = sim.world.servers[server.id].console
    run_until(sim, lambda: b"No bootable device." in console.raw())
    console.truncate()
    return server


def _recording(conn: Any, server_id: str) -> tuple[ConsoleReader, list[tuple[int, int]]]:
    """A reader with the first window the watcher uses, and the re-asks it made."""
    scrolls: list[tuple[int, int]] = []
    reader = ConsoleReader(conn, server_id, Transcript(), first_lines=200,
                           on_scroll=lambda got, asking: scrolls.append((got, asking)))
    return reader, scrolls


def _write(sim: Any, server_id: str, lines: list[str]) -> None:
    record = sim.world.servers[server_id]
    with sim.world.lock:
        for line in lines:
            record.console.write_line(line)


def test_no_host_yet_reads_as_no_console(sim: Any, conn: Any) -> None:
    server = _server(sim, conn)
    read = ConsoleReader(conn, server.id, Transcript()).read()
    assert (read.new_lines, read.available, read.polls) == ((), False, 0)


def test_lines_that_scrolled_past_one_window_are_fetched_with_larger_windows(
        sim: Any, conn: Any) -> None:
    server = active_server(sim, conn)
    reader, scrolls = _recording(conn, server.id)
    first = [f"early {i}" for i in range(50)]
    _write(sim, server.id, first)
    assert reader.read().new_lines == tuple(first)
    # The next window is small (twice what came, plus a margin): 500 new lines overflow it.
    burst = [f"burst {i}" for i in range(500)]
    _write(sim, server.id, burst)
    read = reader.read()
    assert read.new_lines == tuple(burst)
    assert read.polls == len(scrolls) + 1 and scrolls
    assert all(asking > got for got, asking in scrolls)
    assert reader.transcript.lines == first + burst
    assert not read.lost


def reboot_lines(number: int) -> list[str]:
    # What the simulated guest's SeaBIOS prints on every restart (osbuild_sim/guest.py).
    return ["SeaBIOS (version 1.16.3-debian-1.16.3-2)", f"Machine UUID {number:08d}",
            "Booting from Hard Disk..."]


def test_a_poll_starting_with_the_line_the_transcript_ends_with_asks_again_and_loses_nothing(
        sim: Any, conn: Any) -> None:
    # Seen in `osbuild demo`: every reboot prints the same "Booting from Hard Disk...", so a
    # 40-line window that starts on an older one also fits after the transcript's last line
    # (an overlap of 1). Only a longer poll tells which is right; nothing scrolled away.
    server = active_server(sim, conn)
    reader, scrolls = _recording(conn, server.id)
    log = [*reboot_lines(0), *(f"marker {n}" for n in range(34)), *reboot_lines(1)]
    # With one more line, the 39 lines the smallest window holds start on an older one.
    assert log[len(log) + 1 - 39] == log[-1] == "Booting from Hard Disk..."
    _write(sim, server.id, log)
    assert reader.read().new_lines == tuple(log)
    assert reader.read().new_lines == ()
    assert reader.lines == 40  # a quiet poll: the next window is the smallest
    _write(sim, server.id, ["resumed after reboot"])
    read = reader.read()
    assert read.new_lines == ("resumed after reboot",)
    assert scrolls == [(39, 160)] and read.polls == 2
    assert not read.lost and GAP_NOTE not in reader.transcript.lines


def test_a_console_that_scrolls_past_the_largest_ask_reports_lost_lines(
        sim: Any, conn: Any) -> None:
    server = active_server(sim, conn)
    reader, _ = _recording(conn, server.id)
    _write(sim, server.id, [f"early {i}" for i in range(10)])
    assert not reader.read().lost
    # More than libvirt keeps (100 KiB) between two polls: the early lines and the flood's
    # head are gone from every window, the largest too.
    flood = [f"flood {i:06d} " + "x" * 80 for i in range(2 * CONSOLE_CAP // 90)]
    _write(sim, server.id, flood)
    read = reader.read()
    assert read.lost and read.available
    kept = len(sim.world.servers[server.id].console.raw().split(b"\n")) - 1
    assert read.held == kept
    # Windows of 40, 160 and 640 lines, then 2560: the whole log (about 1100 lines).
    assert read.polls == 4
    assert read.new_lines[-1] == flood[-1] and len(read.new_lines) < len(flood)
    assert GAP_NOTE in reader.transcript.lines
    # The reader goes on after the gap. The log stays at libvirt's cap, so the next whole-log
    # window starts inside a line: that fragment is no second gap.
    _write(sim, server.id, ["after"])
    after = reader.read()
    assert after.new_lines == ("after",) and not after.lost


def test_terminal_sequences_read_through_nova_arrive_as_plain_lines(
        sim: Any, conn: Any) -> None:
    # The simulated Nova strips ESC like the real one; what is left of EDK2's colour
    # change and screen clear must not reach the transcript (was "[0m[37m[40m..." text).
    server = active_server(sim, conn)
    _write(sim, server.id, ["\x1b[0m\x1b[37m\x1b[40m\x1b[2J\x1b[01;01HBdsDxe: starting",
                            "\x1b[?25l\x1b[H\x1b[JGNU GRUB  version 2.12\x1b[0m"])
    read = ConsoleReader(conn, server.id, Transcript()).read()
    assert read.new_lines == ("BdsDxe: starting", "GNU GRUB  version 2.12")


def test_the_console_is_gone_from_the_guests_power_off_on(sim: Any, conn: Any) -> None:
    server = _server(sim, conn)
    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    record = sim.world.servers[server.id]
    with sim.world.lock:
        record.console.truncate()
        record.guest = iter([guest.GuestEvent(1.0, guest.ConsoleOutput("last words")),
                             guest.GuestEvent(2.0, guest.PowerOff())])
        record.powered_on_at = sim.world.now()
        record.next_event = next(record.guest)
    reader = ConsoleReader(conn, server.id, Transcript())
    sim.advance(1.5)
    assert reader.read().new_lines == ("last words",)
    sim.advance(1.0)
    # Nova still shows ACTIVE (libvirt's event comes later), yet the console answers 404.
    assert server_status(conn, server.id) == "ACTIVE"
    read = reader.read()
    assert (read.new_lines, read.available) == ((), False)
