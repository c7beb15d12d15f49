"""How build events and outcomes read on a terminal, in a pipe and in a file."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from osbuild.cli.build import print_signal, print_summary
from osbuild.cli.output import HumanView, _Row
from osbuild.pipeline.events import Event
from osbuild.pipeline.run import BuildResult


def test_plain_lines_to_a_pipe_are_never_wrapped() -> None:
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False, width=80))
    reason = "verify: check server-active failed: test server went to error: " + "x" * 120
    view(Event("build.started", "20261201t064237-701ab5", "ws2022-standard", {}))
    view(Event("build.failed", "20261201t064237-701ab5", "ws2022-standard",
               {"reason": reason}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith(reason)


def test_a_build_refused_before_its_start_is_left_to_the_error_lines() -> None:
    # A refused run's build.failed (for cron's log pipeline and its webhook) says what the
    # `osbuild: error:` lines after it say: on a terminal or in cron mail, once is enough.
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False, width=80))
    view(Event("build.failed", "b2", "ws2022-standard",
               {"reason": "cloud east: no clouds.yaml found"}))
    assert out.getvalue() == ""
    assert view.rows["b2"].state == "failed"


def test_elapsed_time_in_plain_lines_reads_like_2h14m() -> None:
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False))
    view.rows["b1"] = _Row("ws2022-standard", "b1", started=time.monotonic() - 8040.5)
    view(Event("build.failed", "b1", "ws2022-standard", {"reason": "boom"}))
    assert out.getvalue().startswith("[2h14m] ws2022-standard b1: failed: boom")


def test_summary_prints_the_build_time_like_2h14m(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary([BuildResult(build_id="b1", family="ws2022-standard", cloud="east",
                               succeeded=True, image_id="5c1f", image_name="ws2022-std",
                               duration=8057.4)])
    assert capsys.readouterr().out.splitlines()[0] == (
        "ws2022-standard in east: built image ws2022-std (5c1f) in 2h14m17s")


def test_a_refresh_says_so_in_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    # Only stderr's last event line said it was a refresh (found from outside, session 30).
    print_summary([BuildResult(build_id="b1", family="ws2022-standard", cloud="east",
                               succeeded=True, image_id="9a0b", image_name="ws2022-std",
                               duration=2840.0, parent_image_id="5c1f", generation=2)])
    assert capsys.readouterr().out.splitlines()[0] == (
        "ws2022-standard in east: built image ws2022-std (9a0b), a refresh of 5c1f "
        "(generation 2) in 47m20s")


def test_a_resumed_build_gives_its_whole_time_and_the_resumed_runs(
        capsys: pytest.CaptureFixture[str]) -> None:
    # `osbuild resume` of a 2 h build printed "in 41m11s": the resumed run alone.
    print_summary([BuildResult(build_id="b1", family="ws2022-standard", cloud="east",
                               succeeded=True, image_id="5c1f", image_name="ws2022-std",
                               duration=7262.0, resumed_duration=2471.0)])
    assert capsys.readouterr().out.splitlines()[0] == (
        "ws2022-standard in east: built image ws2022-std (5c1f) in 2h1m2s "
        "(resumed; this run took 41m11s)")


def test_elapsed_time_follows_the_builds_own_clock() -> None:
    # Against `osbuild sim serve` (600x) a build is over in 12 wall seconds and its summary
    # says "in 1h59m39s": the lines once read "[12s] ... succeeded" beside it.
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False))
    view(Event("step.started", "b1", "ws2022-standard", {"step": "install"}, elapsed=1514.2))
    view(Event("build.succeeded", "b1", "ws2022-standard",
               {"image_name": "ws2022-std", "image_id": "5c1f"}, elapsed=7179.4))
    assert out.getvalue().splitlines() == [
        "[25m14s] ws2022-standard b1: step install",
        "[1h59m39s] ws2022-standard b1: succeeded: image ws2022-std (5c1f)"]


def test_a_refresh_says_of_which_image_when_it_succeeds() -> None:
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False))
    view(Event("build.succeeded", "b2", "ws2022-standard",
               {"image_name": "ws2022-std", "image_id": "9a0b", "kind": "refresh",
                "parent_image_id": "5c1f", "generation": 2}, elapsed=2793.0))
    view(Event("build.succeeded", "b3", "ws2022-standard",
               {"image_name": "ws2022-std", "image_id": "7e2d", "kind": "full",
                "parent_image_id": None, "generation": 0}, elapsed=6994.0))
    assert out.getvalue().splitlines() == [
        "[46m33s] ws2022-standard b2: succeeded: image ws2022-std (9a0b), a refresh of 5c1f "
        "(generation 2)",
        "[1h56m34s] ws2022-standard b3: succeeded: image ws2022-std (7e2d)"]


@pytest.mark.parametrize(("name", "fields", "says"), [
    ("build.started", {"kind": "full", "reason": "--refresh never"},
     "full build started: --refresh never"),
    ("build.started", {"kind": "refresh", "parent_image_id": "c4954a07",
                       "reason": "auto: nothing changed since the current image"},
     "refresh of image c4954a07 started: auto: nothing changed since the current image"),
    ("build.started", {"kind": "verify", "reason": "osbuild images verify c4954a07"},
     "boot test started: osbuild images verify c4954a07"),
    ("build.resumed", {"kind": "full"}, "full build resumed"),
])
def test_the_first_line_says_what_kind_of_run_it_is(
        name: str, fields: dict[str, str], says: str) -> None:
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False, width=80))
    view(Event(name, "20261201t064237-701ab5", "ws2022-standard", fields))
    assert out.getvalue().rstrip("\n").endswith(f"ws2022-standard 20261201t064237-701ab5: {says}")


def test_plain_lines_say_why_if_changed_rebuilds() -> None:
    # README: --if-changed's decision "is printed either way"; a skip was, a rebuild only
    # with --json (cron mail never said which input changed).
    out = io.StringIO()
    view = HumanView(Console(file=out, force_terminal=False, width=80))
    reason = "inputs changed since ws2022-std-20261124: the spec"
    view(Event("build.rebuilding", "b1", "ws2022-standard", {"reason": reason,
                                                             "cloud": "east"}))
    assert out.getvalue().splitlines() == [f"[0s] ws2022-standard b1: rebuilding: {reason}"]


class _Writes(io.StringIO):
    """A stream that keeps each write() apart, as another thread's writes land between."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def write(self, text: str) -> int:
        self.chunks.append(text)
        return super().write(text)


@pytest.mark.parametrize("again", [False, True])
def test_the_signal_notice_is_one_write_so_no_event_line_lands_inside_it(
        monkeypatch: pytest.MonkeyPatch, again: bool) -> None:
    # Piped stderr once read "osbuild: SIGTERM: stopping and cleaning up[1s] ws2022-standard
    # ...: failed: ..." and then an empty line: print() wrote the text and its newline apart,
    # and the build thread's event line came between them, so grep '^\[' missed the event.
    stream = _Writes()
    monkeypatch.setattr("sys.stderr", stream)
    print_signal("SIGTERM", again)
    [chunk] = stream.chunks
    assert chunk.startswith("osbuild: SIGTERM") and chunk.endswith("\n")
    assert chunk.count("\n") == 1
