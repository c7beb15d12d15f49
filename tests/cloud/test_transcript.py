"""Stitching Nova console tails into one transcript."""

from __future__ import annotations

from pathlib import Path

from osbuild import markers
from osbuild.cloud.transcript import GAP_NOTE, Transcript, plain_text


def log(n: int, start: int = 0) -> list[str]:
    return [f"line {i}" for i in range(start, start + n)]


def tail(lines: list[str], length: int, pending: str = "") -> str:
    """What Nova returns for `length`: the last lines, the unterminated one counting too."""
    text = "".join(line + "\n" for line in lines) + pending
    parts = text.split("\n")
    if not pending:
        parts = parts[:-1]
        return "".join(p + "\n" for p in parts[-length:]) if length else ""
    chosen = parts[-length:]
    return "\n".join(chosen)


def test_overlapping_polls_give_each_line_once() -> None:
    full = log(30)
    t = Transcript()
    t.stitch(tail(full[:10], 10), complete_log=True)
    result = t.stitch(tail(full[:18], 10), complete_log=False)
    assert result.overlapped
    assert result.new_lines == full[10:18]
    t.stitch(tail(full, 15), complete_log=False)
    assert t.lines == full


def test_repeated_identical_lines_are_not_dropped() -> None:
    full = ["boot", "x", "x", "x", "x", "done"]
    t = Transcript()
    t.stitch(tail(full[:3], 10), complete_log=True)
    # [x, x, x, done] fits after [boot, x, x] with 1 or 2 of its x's already seen:
    # ambiguous, so the watcher must ask for a longer tail instead of guessing.
    assert not t.stitch(tail(full, 4), complete_log=False).overlapped
    assert t.lines == full[:3]
    assert t.stitch(tail(full, 16), complete_log=True).overlapped
    assert t.lines == full


def test_no_overlap_asks_for_more_then_stitches() -> None:
    full = log(100)
    t = Transcript()
    t.stitch(tail(full[:10], 10), complete_log=True)
    result = t.stitch(tail(full, 20), complete_log=False)  # 90 new lines, only 20 seen
    assert not result.overlapped and result.new_lines == []
    assert t.lines == full[:10]  # nothing appended from a poll that might skip lines
    result = t.stitch(tail(full, 200), complete_log=True)
    assert result.overlapped and t.lines == full


def test_lost_lines_are_marked_as_a_gap() -> None:
    t = Transcript()
    t.stitch(tail(log(10), 10), complete_log=True)
    # The 100 KiB cap dropped everything we had seen: the whole log is newer.
    later = log(5, start=500)
    result = t.stitch(tail(later, 50), complete_log=True)
    assert not result.overlapped
    assert t.lines == [*log(10), GAP_NOTE, *later]


def test_partial_last_line_waits_for_its_newline() -> None:
    t = Transcript()
    t.stitch("a\nb\nOSBUILD:par", complete_log=True)
    assert t.lines == ["a", "b"] and t.pending == "OSBUILD:par"
    t.stitch("b\nOSBUILD:partial done\nc\n", complete_log=False)
    assert t.lines == ["a", "b", "OSBUILD:partial done", "c"]
    assert t.pending == ""


def test_transcript_is_written_to_disk(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    t = Transcript.to_file(path)
    t.stitch("one\ntwo\n", complete_log=True)
    t.stitch("two\nthree\nfou", complete_log=False)
    t.close()
    assert path.read_text() == "one\ntwo\nthree\nfou\n"


def test_log_restart_with_same_prefix_adds_nothing() -> None:
    t = Transcript()
    t.stitch("BIOS\nboot\nmore\n", complete_log=True)
    result = t.stitch("BIOS\n", complete_log=True)  # QEMU restarted, truncated the log
    assert result.new_lines == [] and t.lines == ["BIOS", "boot", "more"]


# The firmware's and GRUB's terminal output as it reaches the serial log: EDK2's
# TerminalDxe sets colours and clears the screen this way, GRUB's vt100 terminfo hides the
# cursor and clears with "\x1b[H\x1b[J"; an OSC sets a window title.
NONCE = "0123456789abcdef0123456789abcdef"
FIRMWARE = ["\x1b[0m\x1b[37m\x1b[40m\x1b[2J\x1b[01;01HBdsDxe: starting Boot0001",
            "\x1b[?25l\x1b[H\x1b[JGNU GRUB  version 2.12\x1b[0m",
            "\x1b]0;Windows Setup\x07\x1b(B\x1b7Loading files\x1b8",
            f"\x1b[0m\x1b[37m\x1b[40mOSBUILD:{NONCE}:specialize:ok:pass 2\x1b[0m"]
PLAIN = ["BdsDxe: starting Boot0001", "GNU GRUB  version 2.12", "Loading files",
         f"OSBUILD:{NONCE}:specialize:ok:pass 2"]


def test_whole_escape_sequences_are_taken_out_and_markers_still_parse(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    t = Transcript.to_file(path)
    result = t.stitch("".join(line + "\n" for line in FIRMWARE), complete_log=True)
    t.close()
    assert result.new_lines == PLAIN
    assert path.read_text() == "".join(line + "\n" for line in PLAIN)
    assert markers.parse_lines(result.new_lines, NONCE) == [
        markers.Marker("specialize", markers.Status.OK, "pass 2")]


def test_what_nova_leaves_of_a_sequence_is_taken_out_too() -> None:
    # Nova's console API strips ESC (nova/api/openstack/compute/console_output.py).
    nova = [line.replace("\x1b", "").replace("\x07", "") for line in FIRMWARE[:2]]
    assert nova[0].startswith("[0m[37m[40m[2J[01;01H")
    t = Transcript()
    assert t.stitch("".join(line + "\n" for line in nova), complete_log=True).new_lines == \
        PLAIN[:2]
    # Brackets of text stay: a lone remnant without parameters is not taken for one.
    kept = "Installing [KB5034441] [H] [1/3] [OK]"
    assert plain_text(kept) == kept


def test_a_sequence_cut_at_a_poll_boundary_is_neither_printed_half_nor_lost(
        tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    for cut in ("\x1b", "\x1b[", "\x1b[3", "\x1b[01;0", "\x1b]0;Win", "\x1b]0;Win\x1b"):
        t = Transcript.to_file(path)
        t.stitch(f"boot\nGRUB {cut}", complete_log=True)
        assert t.pending == "GRUB ", cut
        t.stitch("boot\nGRUB \x1b[37m\x1b]0;Win\x1b\\\x1b[01;01Hmenu\n", complete_log=True)
        t.close()
        assert t.lines == ["boot", "GRUB menu"], cut
        assert path.read_text() == "boot\nGRUB menu\n", cut
        path.unlink()


def test_a_log_ending_inside_a_sequence_ends_without_it(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    t = Transcript.to_file(path)
    t.stitch("boot\nGRUB \x1b[3", complete_log=True)
    t.close()
    assert path.read_text() == "boot\nGRUB \n"
