"""The serial marker grammar shared by the guest scripts, the watcher and the simulator."""

from __future__ import annotations

import pytest

from osbuild.markers import (
    DETAIL_MAX,
    NONCE_LENGTH,
    Marker,
    Status,
    find_any,
    parse_line,
    parse_lines,
    sanitize_detail,
)
from osbuild.media.stages import GUEST_STAGES

STAGES = tuple(stage.name for stage in GUEST_STAGES)

NONCE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def test_render_format() -> None:
    assert Marker("virtio", Status.START).render(NONCE) == f"OSBUILD:{NONCE}:virtio:start"
    assert (
        Marker("updates", Status.INFO, "pass 1/3: 12 updates").render(NONCE)
        == f"OSBUILD:{NONCE}:updates:info:pass 1/3: 12 updates"
    )


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("status", list(Status))
def test_round_trip_every_stage_and_status(stage: str, status: Status) -> None:
    marker = Marker(stage, status, "detail: with colons")
    assert parse_line(marker.render(NONCE), NONCE) == marker


def test_marker_found_inside_other_output() -> None:
    line = f"2026-11-26 03:15:00 12 INFO x [-] OSBUILD:{NONCE}:cleanup:ok trailing"
    assert parse_line(line, NONCE) == Marker("cleanup", Status.OK, "")


def test_marker_with_other_nonce_is_ignored() -> None:
    assert parse_line(Marker("sysprep", Status.START).render(OTHER), NONCE) is None
    # a line carrying both: this build's marker is found
    both = Marker("winpe", Status.START).render(OTHER) + " " + Marker(
        "winpe", Status.OK).render(NONCE)
    assert parse_line(both, NONCE) == Marker("winpe", Status.OK)


def test_a_script_echo_is_not_a_marker() -> None:
    # what a logged copy of a guest script looks like: the nonce is a file read, not text
    echoed = "$line = 'OSBUILD:' + (Get-OsbuildNonce) + ':' + $Stage + ':' + $Status"
    cmd_echo = "@(echo OSBUILD:%N:winpe:start)>COM1"
    assert parse_line(echoed, NONCE) is None
    assert parse_line(cmd_echo, NONCE) is None


@pytest.mark.parametrize(
    "line",
    [
        f"OSBUILD:{NONCE}:virtio:done",  # unknown status
        f"OSBUILD:{NONCE[:-1]}:virtio:ok",  # short nonce
        f"OSBUILD:{NONCE.upper()}:virtio:ok",  # nonce is lowercase hex
        f"osbuild:{NONCE}:virtio:ok",  # prefix is case-sensitive
        f"OSBUILD:{NONCE}::ok",  # empty stage
        "",
    ],
)
def test_malformed_lines(line: str) -> None:
    assert parse_line(line, NONCE) is None


def test_detail_is_one_printable_line() -> None:
    marker = Marker("cloudbaseinit", Status.FAIL, "msiexec\r\nexited\t1603\x00 ")
    rendered = marker.render(NONCE)
    assert "\n" not in rendered and "\r" not in rendered and "\x00" not in rendered
    assert parse_line(rendered, NONCE) == Marker("cloudbaseinit", Status.FAIL,
                                                 "msiexec exited 1603")
    assert sanitize_detail("  a\t\tb\n") == "a b"


def test_parse_lines_keeps_order_and_skips_noise() -> None:
    lines = [
        "Windows Boot Manager",
        Marker("firstlogon", Status.START).render(NONCE),
        Marker("firstlogon", Status.START).render(OTHER),
        "noise",
        Marker("firstlogon", Status.OK).render(NONCE),
    ]
    assert parse_lines(lines, NONCE) == [
        Marker("firstlogon", Status.START),
        Marker("firstlogon", Status.OK),
    ]


def test_every_stage_name_fits_the_grammar() -> None:
    assert len(NONCE) == NONCE_LENGTH
    assert len(set(STAGES)) == len(STAGES)
    for stage in STAGES:
        assert parse_line(Marker(stage, Status.OK).render(NONCE), NONCE) == Marker(stage, Status.OK)


def test_a_long_detail_is_cut_to_one_bounded_line() -> None:
    marker = Marker("sysprep", Status.FAIL, "x" * (DETAIL_MAX * 2) + "\n second line")
    parsed = parse_line(marker.render(NONCE), NONCE)
    assert parsed is not None and parsed.detail == "x" * DETAIL_MAX


def test_find_any_reads_every_build_s_marker_and_nothing_else() -> None:
    # The report highlights markers of any build; parse_line keeps to the build's own.
    line = "noise " + Marker("updates", Status.FAIL, "0x800f0922").render(OTHER) + "\r"
    assert find_any(line) == Marker("updates", Status.FAIL, "0x800f0922")
    assert parse_line(line, NONCE) is None
    both = Marker("winpe", Status.START).render(OTHER) + " " + Marker(
        "winpe", Status.OK).render(NONCE)
    assert find_any(both) == Marker("winpe", Status.START)
    assert find_any(f"OSBUILD:{NONCE[:-1]}:virtio:ok") is None
    assert find_any("Windows Boot Manager") is None
