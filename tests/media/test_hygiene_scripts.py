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
    # each behind its own switch; the page file's is the caller's (a refresh's update restart
    # may have taken pagefile.sys already)
    for switch in ("component_cleanup", "wu_cache", "hiberfile"):
        assert f"if ($Hygiene.{switch})" in hygiene
    assert "if ($Pagefile) {" in hygiene and "Disable-OsbuildPagefile" in pwsh.commands(hygiene)
    shared = rendered_script(render(example_spec("ws2022-standard.yaml")), "lib.ps1")
    off = pwsh.function(shared, "Disable-OsbuildPagefile")
    assert "AutomaticManagedPagefile = $false" in off
    assert "Win32_PageFileSetting | Remove-CimInstance" in off
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
    # The restart is for the page file, and only while pagefile.sys is still there.
    assert "$pagefileLeft = $Plan.hygiene.pagefile -and -not $State.pagefile_off" in body
    assert "Invoke-OsbuildHygiene -Hygiene $Plan.hygiene -Pagefile $pagefileLeft" in body
    assert "if ($pagefileLeft) {\n        $State.hygiene_rebooted = $true" in body
    assert "Restore-OsbuildPagefile" in commands  # instances make their own pagefile


def test_a_refresh_turns_the_page_file_off_before_its_update_restarts(example_spec,
                                                                       render) -> None:
    # A refresh's cleanup then needs no restart of its own (issue 14: a reboot less). The
    # script is the same for both kinds of build; the plan's kind decides at run time.
    media = render(example_spec("ws2022-standard.yaml"))
    updates = rendered_script(media, "stage-updates.ps1")
    assert pwsh.problems(pwsh.parse(updates)) == []
    restart = pwsh.function(updates, "Request-OsbuildUpdateRestart")
    assert ("if ($Plan.kind -eq 'refresh' -and $Plan.hygiene.pagefile -and "
            "-not $State.pagefile_off) {") in restart
    assert pwsh.commands(restart)[0] == "Disable-OsbuildPagefile"
    assert "$State.pagefile_off = $true" in restart and "$State.reboot = $true" in restart
    # Both of the stage's restarts go through it; no other sets the reboot flag.
    body = updates[updates.index("\nwhile ($true) {"):]
    assert pwsh.commands(body).count("Request-OsbuildUpdateRestart") == 2
    assert "$State.reboot" not in body
    # The flag survives the restart: the driver's state keeps it from the start.
    lib = rendered_script(media, "lib.ps1")
    assert "pagefile_off = $false" in pwsh.function(lib, "Read-OsbuildState")


def test_updates_leave_component_cleanup_to_hygiene(tmp_path: Path, render) -> None:
    body = MINIMAL_SPEC + "updates:\n  enabled: true\n"
    media = render(load_spec(write_spec(tmp_path / "s", body)))
    updates = rendered_script(media, "stage-updates.ps1")
    assert "dism.exe" not in updates.lower()
