"""Stitching Nova console tails into one transcript."""

from __future__ import annotations

from pathlib import Path

from osbuild.cloud.transcript import GAP_NOTE, Transcript


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
