"""Console log semantics, byte for byte as Nova returns them."""

from __future__ import annotations

from typing import Any

import pytest
from openstack import exceptions

from osbuild_sim.console import CONSOLE_CAP, ConsoleLog
from tests.sim.conftest import run_until, server_status


def test_length_counts_pieces_after_the_last_newline_like_nova() -> None:
    log = ConsoleLog()
    for line in ("one", "two", "three"):
        log.write_line(line)
    assert log.output() == "one\ntwo\nthree\n"
    assert log.output(0) == ""
    # Nova splits on \n: the empty piece after the final newline counts as a line.
    assert log.output(1) == ""
    assert log.output(2) == "three\n"
    assert log.output(3) == "two\nthree\n"
    assert log.output(99) == "one\ntwo\nthree\n"


def test_control_characters_are_stripped_but_tab_and_newline_kept() -> None:
    log = ConsoleLog()
    log.write_line("\x1b[2Jclear\r\tindent\x07bell\x7f")
    assert log.output() == "[2Jclear\tindentbell\x7f\n"


def test_non_ascii_bytes_become_replacement_characters() -> None:
    log = ConsoleLog()
    log.write_line("caf\u00e9")
    assert log.output() == "caf\ufffd\ufffd\n"


def test_only_the_last_100_kib_are_kept() -> None:
    log = ConsoleLog()
    lines = [f"line {i:06d} " + "x" * 50 for i in range(3000)]
    for line in lines:
        log.write_line(line)
    everything = "".join(line + "\n" for line in lines).encode()
    assert len(everything) > CONSOLE_CAP
    assert log.raw() == everything[-CONSOLE_CAP:]
    assert log.output() == everything[-CONSOLE_CAP:].decode()
    # `length` applies after the cap: the first (cut) line is reachable only without it.
    assert log.output(3) == lines[-2] + "\n" + lines[-1] + "\n"


def test_truncate_empties_the_log() -> None:
    log = ConsoleLog()
    log.write_line("before")
    log.truncate()
    assert log.output() == ""


def test_console_over_http_409_before_host_then_lines_then_404_after_shutoff(
    sim: Any, conn: Any
) -> None:
    server = conn.compute.create_server(
        name="console", flavor_id="2", networks="none",
        block_device_mapping=[{"boot_index": 0, "source_type": "blank",
                               "destination_type": "volume", "volume_size": 1,
                               "delete_on_termination": True}])
    with pytest.raises(exceptions.ConflictException) as err:
        conn.compute.get_server_console_output(server)
    assert err.value.status_code == 409
    assert f"Instance {server.id} is not ready" in str(err.value)

    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    record = sim.world.servers[server.id]
    # The blank disk's firmware lines come after power-on: let them all be written, or one
    # landing between the writes below and the reads fails the test on a loaded machine.
    run_until(sim, lambda: record.next_event is None)
    with sim.world.lock:
        record.console.truncate()
        for i in range(200):
            record.console.write_line(f"\x1b[0mline {i}\r")
    out = conn.compute.get_server_console_output(server, length=3)["output"]
    assert out == "[0mline 198\n[0mline 199\n"
    assert conn.compute.get_server_console_output(server, length=0)["output"] == ""
    full = conn.compute.get_server_console_output(server)["output"]
    assert full == "".join(f"[0mline {i}\n" for i in range(200))

    conn.compute.stop_server(server)
    run_until(sim, lambda: server_status(conn, server.id) == "SHUTOFF")
    with pytest.raises(exceptions.NotFoundException) as err:
        conn.compute.get_server_console_output(server)
    assert "Guest does not have a console available." in str(err.value)


def test_start_after_stop_truncates_the_log(sim: Any, conn: Any, boot_blank: Any) -> None:
    server = boot_blank("restart")
    record = sim.world.servers[server.id]
    with sim.world.lock:
        record.console.write_line("from the first boot")
    conn.compute.stop_server(server)
    run_until(sim, lambda: server_status(conn, server.id) == "SHUTOFF")
    conn.compute.start_server(server)
    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    assert "from the first boot" not in conn.compute.get_server_console_output(server)["output"]
