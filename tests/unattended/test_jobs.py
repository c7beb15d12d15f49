"""The unattended-run library without the CLI: keyword-only calls, result objects, events."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from osbuild.errors import (
    BuildFailed,
    CleanupIncomplete,
    Interrupted,
    InvalidInput,
)
from osbuild.pipeline import BuildOptions, BuildResult, CancelToken, EventBus
from osbuild.pipeline.events import Event, EventName
from osbuild.resources import examples_dir
from osbuild.spec import BuildSpec, load_spec
from osbuild.unattended import jobs


@pytest.fixture
def spec(tmp_path: Path) -> BuildSpec:
    shutil.copy(examples_dir() / "ws2022-standard.yaml", tmp_path / "ws2022-standard.yaml")
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    return load_spec(tmp_path / "ws2022-standard.yaml")


def _result(error: Any = None, **fields: Any) -> BuildResult:
    return BuildResult(build_id="b", family="f", cloud=None, succeeded=error is None,
                       error=error, **fields)


# One build of each outcome, with the code it exits with on its own.
_OUTCOMES = {
    "built": (_result(), 0),
    "skipped": (_result(skipped="busy"), 0),
    "refused": (_result(InvalidInput(["--refresh always: no current image"])), 2),
    "failed": (_result(BuildFailed("boom", stage="virtio")), 1),
    "interrupted": (_result(Interrupted("SIGTERM")), 130),
    "built, signal during promotion": (_result(interrupted="SIGINT"), 130),
    "failed, left resources": (_result(CleanupIncomplete(["volume v"], BuildFailed("b"))), 3),
    "interrupted, left resources": (
        _result(CleanupIncomplete(["server s"], Interrupted("SIGINT"))), 3),
}
# README's "Exit codes": resources left behind, then interrupted, then failed, then refused.
_RANK = [3, 130, 1, 2, 0]


@pytest.mark.parametrize("first", _OUTCOMES)
@pytest.mark.parametrize("second", _OUTCOMES)
def test_a_run_exits_with_the_code_that_asks_most_of_its_operator(first: str,
                                                                   second: str) -> None:
    (one, one_code), (other, other_code) = _OUTCOMES[first], _OUTCOMES[second]
    assert (one.exit_code, other.exit_code) == (one_code, other_code)
    expected = min(one_code, other_code, key=_RANK.index)
    assert jobs.RunResult([one, other]).exit_code == expected
    assert jobs.RunResult([other, one]).exit_code == expected


def test_the_exit_code_precedence_spelled_out() -> None:
    outcome = {name: result for name, (result, _code) in _OUTCOMES.items()}

    def code(*names: str) -> int:
        return jobs.RunResult([outcome[name] for name in names]).exit_code

    assert jobs.RunResult([]).exit_code == 0
    assert code("built", "skipped") == 0
    assert code("failed, left resources", "refused") == 3  # was 2: 2 says nothing was made
    assert code("interrupted", "failed, left resources") == 3  # 130 says all was deleted
    assert code("failed", "refused") == 1  # was 2
    assert code("interrupted", "failed") == 130
    assert code("refused", "interrupted") == 130
    assert code("built", "refused") == 2


def test_jobs_are_specs_times_clouds_without_repeats(spec: BuildSpec) -> None:
    planned = jobs.plan_jobs(specs=[spec], clouds=["east", "west", "east"])
    assert planned == [jobs.Job(spec, "east"), jobs.Job(spec, "west")]
    assert jobs.plan_jobs(specs=[spec], clouds=None) == [jobs.Job(spec, None)]


def test_the_arguments_are_keyword_only(spec: BuildSpec, tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        jobs.run_builds([spec], None, BuildOptions(log_dir=tmp_path))  # type: ignore[misc]


def test_parallel_below_one_is_refused_before_any_cloud_is_asked(spec: BuildSpec,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--parallel must be at least 1"):
        jobs.run_builds(specs=[spec], clouds=["no-such-cloud"],
                        options=BuildOptions(log_dir=tmp_path), parallel=0)


def _recording_bus() -> tuple[EventBus, list[Event]]:
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    return bus, seen


def test_metrics_record_a_skip(spec: BuildSpec, tmp_path: Path) -> None:
    bus, seen = _recording_bus()
    path = tmp_path / "osbuild.prom"
    skipped = BuildResult(build_id="b", family=spec.name, cloud="east", succeeded=False,
                          skipped="busy")
    jobs.report_outcome(result=skipped, spec=spec, metrics_file=path, bus=bus)
    assert 'result="skipped"' in path.read_text()
    assert seen == []  # no webhook for a skip, nothing to warn about


def test_an_unwritable_metrics_file_is_a_warning_not_a_failure(spec: BuildSpec,
                                                               tmp_path: Path) -> None:
    bus, seen = _recording_bus()
    (tmp_path / "a-file").write_text("")
    jobs.report_outcome(result=_result(), spec=spec,
                        metrics_file=tmp_path / "a-file" / "osbuild.prom", bus=bus)
    assert [e.name for e in seen] == [EventName.WARNING]
    assert "could not write" in seen[0].fields["message"]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="only the main thread takes signals")
def test_signals_cancel_every_build_and_tell_the_caller() -> None:
    cancel, told = CancelToken(), []
    before = signal.getsignal(signal.SIGTERM)
    with jobs.signals_cancel(cancel, on_signal=lambda name, again: told.append((name, again))):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    assert cancel.cancelled and cancel.signal_name == "SIGTERM"
    assert told == [("SIGTERM", False), ("SIGTERM", True)]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="only the main thread takes signals")
def test_a_signal_cancels_even_when_saying_so_fails() -> None:
    # Ctrl-C with stderr gone (`2>&1 | head`): the notice raised before the cancel, so the
    # builds ran on, and the BrokenPipeError surfaced wherever the main thread was.
    cancel = CancelToken()

    def closed_stderr(name: str, again: bool) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with jobs.signals_cancel(cancel, on_signal=closed_stderr):
        os.kill(os.getpid(), signal.SIGINT)
    assert cancel.cancelled and cancel.signal_name == "SIGINT"


def test_signals_are_left_alone_off_the_main_thread() -> None:
    cancel, installed = CancelToken(), []

    def body() -> None:
        with jobs.signals_cancel(cancel):
            installed.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert installed == [before]


@pytest.mark.slow
def test_a_library_run_builds_and_reports_through_listeners(
        spec: BuildSpec, tmp_path: Path, fast_sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The clouds.yaml entry the simulated cloud writes carries its pace.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE",
                       str(fast_sim.write_clouds_yaml(tmp_path / "c.yaml")))
    seen: list[Event] = []
    metrics_file = tmp_path / "osbuild.prom"
    outcome = jobs.run_builds(
        specs=[spec], clouds=[fast_sim.cloud_name], listeners=[seen.append],
        options=BuildOptions(log_dir=tmp_path / "logs", state_dir=tmp_path / "state",
                             lock_family=True),
        metrics_file=metrics_file)
    assert outcome.exit_code == 0, outcome.results[0].error
    [result] = outcome.results
    assert result.succeeded and result.image_id
    names = [e.name for e in seen]
    assert names[0] == EventName.BUILD_STARTED and names[-1] == EventName.BUILD_SUCCEEDED
    assert 'result="success"' in metrics_file.read_text()


def test_parallel_bounds_each_cloud_on_its_own(spec: BuildSpec, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--parallel 1 with three builds in one cloud and one in another: never two at once in
    a cloud, and the other cloud's build does not wait behind them."""
    specs = [spec.model_copy(update={"name": f"family-{n}"}) for n in range(3)]
    running: dict[str | None, int] = {"east": 0, "west": 0}
    most: dict[str | None, int] = {"east": 0, "west": 0}
    west_started = threading.Event()
    guard = threading.Lock()

    class _Conn:
        def close(self) -> None:
            pass

    def fake_build(one_spec: BuildSpec, conn: Any, cloud: str | None, *args: Any,
                   **kwargs: Any) -> BuildResult:
        with guard:
            running[cloud] += 1
            most[cloud] = max(most[cloud], running[cloud])
        if cloud == "west":
            west_started.set()
        else:
            # The east builds hold their slot until west has started: with one shared pool of
            # parallel x clouds workers, two east builds would take both slots and west would wait.
            west_started.wait(timeout=5)
        with guard:
            running[cloud] -= 1
        return _result()

    monkeypatch.setattr(jobs, "connect", lambda *a, **k: _Conn())
    monkeypatch.setattr(jobs, "_reach_clouds", lambda clouds, **k: jobs._Reached(
        identities={c: str(c) for c in clouds}, labels={c: str(c) for c in clouds}))
    monkeypatch.setattr(jobs, "preflight_run", lambda **k: None)
    monkeypatch.setattr(jobs, "_locked_build", fake_build)
    monkeypatch.setattr(jobs, "report_outcome", lambda **k: None)
    west_only = specs[0].model_copy(update={"name": "family-west", "clouds": ["west"]})
    east = [s.model_copy(update={"clouds": ["east"]}) for s in specs]
    result = jobs.run_builds(specs=[*east, west_only], clouds=None,
                             options=BuildOptions(log_dir=tmp_path), parallel=1)
    assert len(result.results) == 4
    assert most == {"east": 1, "west": 1}
    assert west_started.is_set()
