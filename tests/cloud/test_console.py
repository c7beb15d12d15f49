"""The one console reader against the simulated Nova: windows, stitching, 409 and 404."""

from __future__ import annotations

from typing import Any

from osbuild.cloud.console import ConsoleReader
from osbuild.cloud.transcript import Transcript
from osbuild_sim import guest
from tests.sim.conftest import run_until, server_status


def _server(sim: Any, conn: Any) -> Any:
    return conn.compute.create_server(
        name="console", flavor_id="2", networks="none",
        block_device_mapping=[{"boot_index": 0, "source_type": "blank",
                               "destination_type": "volume", "volume_size": 1,
                               "delete_on_termination": True}])


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
    server = _server(sim, conn)
    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    sim.world.servers[server.id].console.truncate()
    scrolls: list[tuple[int, int]] = []
    reader = ConsoleReader(conn, server.id, Transcript(), first_lines=200,
                           on_scroll=lambda got, asking: scrolls.append((got, asking)))
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


def test_terminal_sequences_read_through_nova_arrive_as_plain_lines(
        sim: Any, conn: Any) -> None:
    # The simulated Nova strips ESC like the real one; what is left of EDK2's colour
    # change and screen clear must not reach the transcript (was "[0m[37m[40m..." text).
    server = _server(sim, conn)
    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    sim.world.servers[server.id].console.truncate()
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
