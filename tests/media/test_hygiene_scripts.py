"""The image hygiene the cleanup stage runs: present, in order, switchable, and parsing."""

from __future__ import annotations

from pathlib import Path

from osbuild.spec import load_spec

from . import pwsh
from .helpers import MINIMAL_SPEC, rendered_script, write_spec


def test_every_step_is_on_by_default_and_planned(example_spec, render) -> None:
    media = render(example_spec("ws2022-standard.yaml"))
    hygiene = media.plan.hygiene
    assert (hygiene.component_cleanup, hygiene.wu_cache, hygiene.pagefile, hygiene.hiberfile,
            hygiene.zero_free_space) == (True, True, True, True, True)
    assert hygiene.reset_base is False  # it makes installed updates permanent


def test_the_spec_switches_each_step(tmp_path: Path, render) -> None:
    body = MINIMAL_SPEC + ("hygiene:\n  component_cleanup: true\n  reset_base: true\n"
                           "  wu_cache: false\n  pagefile: false\n  hiberfile: false\n"
                           "  zero_free_space: false\n")
    plan = render(load_spec(write_spec(tmp_path / "s", body))).plan.hygiene
    assert plan.model_dump() == {"component_cleanup": True, "reset_base": True,
                                 "wu_cache": False, "pagefile": False, "hiberfile": False,
                                 "zero_free_space": False}


def test_the_library_does_what_each_step_names(example_spec, render) -> None:
    lib = rendered_script(render(example_spec("ws2022-standard.yaml")), "stage-cleanup.ps1")
    hygiene = pwsh.function(lib, "Invoke-OsbuildHygiene")
    assert pwsh.problems(pwsh.parse(hygiene)) == []
    assert "'/Online /Cleanup-Image /StartComponentCleanup'" in hygiene
    assert "if ($Hygiene.reset_base) { $arguments += ' /ResetBase' }" in hygiene
    assert "'SoftwareDistribution\\Download'" in hygiene
    assert "& powercfg.exe /hibernate off" in hygiene
    assert "AutomaticManagedPagefile = $false" in hygiene
    assert "Win32_PageFileSetting | Remove-CimInstance" in hygiene
    # each behind its own switch
    for switch in ("component_cleanup", "wu_cache", "hiberfile", "pagefile"):
        assert f"if ($Hygiene.{switch})" in hygiene
    zero = pwsh.function(lib, "Clear-OsbuildFreeSpace")
    assert "$stream.Write($chunk, 0, $count)" in zero
    assert "Remove-Item -LiteralPath $file" in zero.split("finally")[1]  # never left behind
    assert "Optimize-Volume -DriveLetter $drive -ReTrim" in zero


def test_cleanup_runs_hygiene_first_reboots_for_the_pagefile_and_zeroes_last(
        example_spec, render) -> None:
    cleanup = rendered_script(render(example_spec("win11-enterprise.yaml")), "stage-cleanup.ps1")
    body = cleanup[cleanup.index("\n# Image hygiene first"):]  # after the function definitions
    commands = pwsh.commands(body)
    assert commands[0] == "Invoke-OsbuildHygiene"
    assert commands[-1] == "Clear-OsbuildFreeSpace"
    assert "if ($Plan.hygiene.zero_free_space) { Clear-OsbuildFreeSpace }" in cleanup
    before_reboot = body.split("return\n", 1)[0]
    assert "$State.hygiene_rebooted = $true" in before_reboot
    assert "$State.reboot = $true" in before_reboot
    assert "Restore-OsbuildPagefile" in commands  # instances make their own pagefile


def test_updates_leave_component_cleanup_to_hygiene(tmp_path: Path, render) -> None:
    body = MINIMAL_SPEC + "updates:\n  enabled: true\n"
    media = render(load_spec(write_spec(tmp_path / "s", body)))
    updates = rendered_script(media, "stage-updates.ps1")
    assert "dism.exe" not in updates.lower()
