"""The runner's guarantees: reverse-order cleanup on success, failure and interruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuild.cloud.clock import CancelToken
from osbuild.errors import (
    BuildFailed,
    CleanupIncomplete,
    GuestFailure,
    Interrupted,
)
from osbuild.pipeline.context import BuildContext, BuildOptions
from osbuild.pipeline.events import EventBus
from osbuild.pipeline.runner import final_error, run_steps
from osbuild.spec import parse_spec

SPEC = """
name: unit
windows: {version: "2022", edition: SERVERSTANDARD, iso_image: win.iso}
virtio: {iso_image: virtio.iso}
cloudbase_init:
  msi: https://example.invalid/cbi.msi
  sha256: "%s"
builder: {flavor: m1.large}
image: {name: "unit-{date}"}
""" % ("a" * 64)


def make_ctx(tmp_path: Path, **options: object) -> BuildContext:
    return BuildContext(
        spec=parse_spec(SPEC),
        build_id="20260101t000000-abcdef",
        conn=None,  # type: ignore[arg-type]
        cloud_name=None,
        options=BuildOptions(log_dir=tmp_path, **options),  # type: ignore[arg-type]
        bus=EventBus(),
        cancel=CancelToken(),
    )


class Creates:
    """A step that creates named resources and records every deletion in `log`."""

    def __init__(self, name: str, log: list[str], *resources: str, fail: Exception | None = None,
                 keep: bool = False, kind: str = "volume") -> None:
        self.name = name
        self.log = log
        self.resources = resources
        self.fail = fail
        self.keep = keep
        self.kind = kind

    def run(self, ctx: BuildContext) -> None:
        for rid in self.resources:
            ctx.track(self.kind, rid, rid, lambda rid=rid: self.log.append(rid),
                      keep_on_success=self.keep)
        if self.fail is not None:
            raise self.fail


def test_success_deletes_everything_in_reverse_but_keeps_the_product(tmp_path: Path) -> None:
    log: list[str] = []
    ctx = make_ctx(tmp_path)
    outcome = run_steps([Creates("a", log, "a1", "a2"), Creates("b", log, "b1"),
                         Creates("c", log, "image", keep=True, kind="image")], ctx)
    assert outcome.error is None and outcome.leftovers == []
    assert log == ["b1", "a2", "a1"]
    assert set(ctx.step_timings) == {"a", "b", "c"}


def test_failure_deletes_the_product_too_and_stops_running_steps(tmp_path: Path) -> None:
    log: list[str] = []
    later = Creates("later", log, "never")
    outcome = run_steps([Creates("a", log, "a1"),
                         Creates("b", log, "image", keep=True, kind="image",
                                 fail=GuestFailure("boom", stage="updates")),
                         later], make_ctx(tmp_path))
    assert isinstance(outcome.error, GuestFailure)
    assert log == ["image", "a1"]


def test_unexpected_exception_becomes_build_failure_and_still_cleans(tmp_path: Path) -> None:
    log: list[str] = []
    outcome = run_steps([Creates("a", log, "a1"), Creates("b", log, fail=KeyError("x"))],
                        make_ctx(tmp_path))
    assert isinstance(outcome.error, BuildFailed)
    assert outcome.error.stage == "b"
    assert log == ["a1"]


def test_an_sdk_error_names_its_type_once(tmp_path: Path) -> None:
    from openstack import exceptions as sdk_exc

    # What openstacksdk raises for a 413: its text already starts with "HttpException:".
    error = sdk_exc.HttpException(message="HttpException: 413: Client Error for url: "
                                  "http://cloud/volumes, VolumeSizeExceedsAvailableQuota")
    outcome = run_steps([Creates("volumes", [], fail=error)], make_ctx(tmp_path))
    assert str(outcome.error) == ("volumes: HttpException: 413: Client Error for url: "
                                  "http://cloud/volumes, VolumeSizeExceedsAvailableQuota")
    outcome = run_steps([Creates("b", [], fail=KeyError("x"))], make_ctx(tmp_path))
    assert str(outcome.error) == "b: KeyError: 'x'"


def test_cancellation_before_a_step_interrupts_and_cleans(tmp_path: Path) -> None:
    log: list[str] = []
    ctx = make_ctx(tmp_path)

    class CancelNow:
        name = "signal"

        def run(self, ctx: BuildContext) -> None:
            ctx.cancel.cancel("SIGTERM")

    outcome = run_steps([Creates("a", log, "a1"), CancelNow(), Creates("b", log, "b1")], ctx)
    assert isinstance(outcome.error, Interrupted)
    assert outcome.error.signal_name == "SIGTERM"
    assert outcome.error.exit_code == 130
    assert log == ["a1"]
    # Between steps: the signal cut nothing short (the "signal" step had finished, as a
    # short step like render or publish does); it stopped the build before the next one.
    assert str(outcome.error) == "interrupted by SIGTERM before the b step"
    assert outcome.error.stage == "b"


def test_a_signal_during_the_cleanup_of_a_successful_build_is_reported(
        tmp_path: Path) -> None:
    # The family claim is deleted last; a Ctrl-C then printed "stopping and cleaning up"
    # and the run exited 0 (found from outside, session 28). The build succeeded all the
    # same: nothing is cut short, the signal is the run's late signal (exit 130).
    ctx = make_ctx(tmp_path)
    deleted: list[str] = []

    def delete_claim() -> None:
        ctx.cancel.cancel("SIGINT")  # arrives while the claim is being deleted
        deleted.append("claim")

    class Claims:
        name = "claim"

        def run(self, ctx: BuildContext) -> None:
            ctx.track("image", "claim", "claim", delete_claim)

    outcome = run_steps([Claims(), Creates("b", [], "image", keep=True, kind="image")], ctx)
    assert outcome.error is None and deleted == ["claim"]
    assert outcome.late_signal == "SIGINT"


def test_keep_on_failure_keeps_server_and_volumes_only(tmp_path: Path) -> None:
    log: list[str] = []
    ctx = make_ctx(tmp_path, keep_on_failure=True)
    outcome = run_steps([Creates("img", log, "cfg", kind="image"),
                         Creates("vol", log, "v1"),
                         Creates("srv", log, "s1", kind="server",
                                 fail=BuildFailed("x"))], ctx)
    assert log == ["cfg"]
    assert outcome.kept == ["server s1 (s1)", "volume v1 (v1)"]


def test_failed_deletion_is_reported_with_ids(tmp_path: Path) -> None:
    log: list[str] = []
    ctx = make_ctx(tmp_path)

    class Stubborn:
        name = "stubborn"

        def run(self, ctx: BuildContext) -> None:
            def refuse() -> None:
                raise RuntimeError("503 forever")

            ctx.track("volume", "v-stuck", "osbuild-x-iso", refuse)

    outcome = run_steps([Creates("a", log, "a1"), Stubborn()], ctx)
    assert outcome.error is None
    assert log == ["a1"]
    error = final_error(outcome)
    assert isinstance(error, CleanupIncomplete)
    assert error.exit_code == 3
    assert any("v-stuck" in line for line in error.lines())


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_error_raised_after_cancel_is_reported_as_interruption(tmp_path: Path,
                                                               signal_name: str) -> None:
    ctx = make_ctx(tmp_path)

    class CutShort:
        name = "wait"

        def run(self, ctx: BuildContext) -> None:
            ctx.cancel.cancel(signal_name)
            raise ConnectionError("request aborted")

    outcome = run_steps([CutShort()], ctx)
    assert isinstance(outcome.error, Interrupted)
    assert outcome.error.signal_name == signal_name
    # It names the step it cut short, as a failure names its stage.
    assert str(outcome.error) == f"interrupted by {signal_name} while running the wait step"
    assert outcome.error.stage == "wait"


def test_cleanup_incomplete_after_a_failure_keeps_its_cause_and_stage(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)

    class TimesOut:
        name = "capture"

        def run(self, ctx: BuildContext) -> None:
            def refuse() -> None:
                raise RuntimeError("volume stuck in uploading")

            ctx.track("volume", "v-stuck", "osbuild-x-target", refuse)
            raise BuildFailed("target volume v-stuck upload still uploading after 10m",
                              stage="capture")

    error = final_error(run_steps([TimesOut()], ctx))
    assert isinstance(error, CleanupIncomplete) and error.exit_code == 3
    # The one-line reason (build.failed's, the webhook's) says what failed first.
    assert str(error).startswith("capture: target volume v-stuck upload still uploading")
    assert "could not delete: volume v-stuck" in str(error)
    assert error.stage == "capture"
