"""The guest stage table is the one declaration the spec, render, the watcher and README follow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuild import resources
from osbuild.durations import format_duration
from osbuild.media import stages
from osbuild.spec import StageTimeouts

README = Path(__file__).resolve().parents[2] / "README.md"
GUEST_DOC = README.parent / "docs" / "guest.md"


def test_stage_timeouts_have_one_field_per_stage_with_its_default() -> None:
    timeouts = StageTimeouts()
    fields = set(StageTimeouts.model_fields)
    assert fields == {"volumes", "boot", "capture", "verify", *stages.names()}
    for stage in stages.GUEST_STAGES:
        assert getattr(timeouts, stage.name) == stage.default_timeout
        assert timeouts.of(stage.name) == stage.default_timeout
    assert StageTimeouts(updates="3h").of("updates") == 3 * 3600


def test_a_stage_the_spec_model_predates_gets_its_declared_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    extra = stages.GuestStage("defrag", "oobeSystem", "build account",
                              "scripts/stage-scripts.ps1.j2", 123.0)
    monkeypatch.setattr(stages, "GUEST_STAGES", (*stages.GUEST_STAGES, extra))
    assert StageTimeouts().of("defrag") == 123.0


def test_the_plan_takes_the_needed_stages_in_table_order(example_spec, render) -> None:
    media = render(example_spec("ws2022-standard.yaml"))
    assert media.plan.stages == stages.planned(media.plan)
    without = media.plan.model_copy(update={"scripts": ()})
    assert "scripts" not in stages.planned(without)
    updates_off = media.plan.updates.model_copy(update={"enabled": False})
    assert "updates" not in stages.planned(
        media.plan.model_copy(update={"updates": updates_off}))
    order = stages.watch_order(media.plan.stages)
    assert order == ("winpe", "specialize", "firstlogon", *media.plan.stages)
    assert media.plan.settle_reboots == stages.MAX_SETTLE_REBOOTS
    assert (media.plan.updates.attempts, media.plan.updates.retry_delay) == (
        stages.UPDATE_ATTEMPTS, stages.UPDATE_RETRY_DELAY)


def test_every_plan_stage_has_a_template_and_every_template_a_stage() -> None:
    templates = {p.name for p in (resources.templates_dir() / "scripts").glob("stage-*.ps1.j2")}
    declared = {s.script.rsplit("/", 1)[-1] for s in stages.GUEST_STAGES if s.script}
    assert templates == declared


def test_readme_states_the_declared_defaults() -> None:
    text = README.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `stage_timeouts` |"))
    for stage in stages.GUEST_STAGES:
        assert f"`{stage.name}` {format_duration(stage.default_timeout)}" in row, stage.name
    assert re.search(rf"at most {stages.MAX_SETTLE_REBOOTS} times", text)


def test_docs_guest_table_has_a_row_per_driver_stage_in_table_order() -> None:
    # docs/guest.md's "Pass by pass" table: one row per stage the driver runs, named as the
    # stage table names it and in its order (Setup's passes are rows named by their pass).
    text = GUEST_DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z]+)` \|", text, re.MULTILINE)
    assert rows == [stage.name for stage in stages.GUEST_STAGES if stage.in_plan]
    for stage in stages.GUEST_STAGES:
        if not stage.in_plan:
            assert f"| {stage.windows_pass.split()[0]}" in text, stage.name
    for stage in stages.settling():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{stage}` |"))
        assert "pending" in row, stage
