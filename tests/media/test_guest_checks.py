"""The guest's checks against real Windows' breaks (issue 13 items 1-3), in the rendered scripts.

Each check is present where it must run, the scripts parse with tree-sitter-powershell, and the
texts the scripts write are the ones the simulated guest writes (so that the end-to-end tests
against the simulator exercise the same markers a real guest sends).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuild.media import layout, stages
from osbuild_sim import guest as sim_guest

from . import pwsh


@pytest.fixture
def scripts(example_spec, render) -> Path:
    media = render(example_spec("ws2022-standard.yaml"))
    assert {"updates", "cleanup", "sysprep"} <= set(media.plan.stages)
    return media.root / layout.SCRIPTS_DIR


def _tree(path: Path):
    tree = pwsh.parse(path.read_bytes())
    assert pwsh.problems(tree) == [], path.name
    return tree


def _literals(path: Path) -> list[str]:
    return [v for n in pwsh.nodes(_tree(path), "string_literal")
            if (v := pwsh.verbatim_value(n)) is not None]


def _commands(path: Path) -> list[str]:
    return [(n.text or b"").decode() for n in pwsh.nodes(_tree(path), "command_name")]


def _function(text: str, name: str) -> str:
    start = text.index(f"function {name} {{")
    end = text.find("\nfunction ", start + 1)
    return text[start:end if end > 0 else len(text)]


# --------------------------------------------------------------------------- pending reboot


def test_every_pending_reboot_signal_is_checked(scripts: Path) -> None:
    lib = (scripts / "lib.ps1").read_text(encoding="utf-8-sig")
    check = _function(lib, "Get-OsbuildPendingReboot")
    current = r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion"
    for signal in (
        "'Microsoft.Update.SystemInfo'",
        f"'{current}\\WindowsUpdate\\Auto Update\\RebootRequired'",
        f"'{current}\\Component Based Servicing\\RebootPending'",
        r"'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager'",
        "'PendingFileRenameOperations'",
    ):
        assert signal in check, signal
    assert ".RebootRequired" in check


def test_the_driver_settles_before_the_stages_the_table_names(scripts: Path) -> None:
    driver = (scripts / "firstlogon.ps1").read_text(encoding="utf-8-sig")
    settling = stages.settling()
    assert settling == ("cleanup", "sysprep")
    assert "$SettleStages = @('cleanup', 'sysprep')" in driver
    block = driver[driver.index("if ($SettleStages -contains $stage)"):
                   driver.index("if (-not $StageScripts.ContainsKey($stage))")]
    assert "Get-OsbuildPendingReboot" in block and "Restart-Computer -Force" in block
    # bounded: the cap comes from the plan, exceeding it is a fail marker
    assert "[int]$Plan.settle_reboots" in block and "-Status 'fail'" in block
    # and the settling runs before the stage's script
    assert driver.index("if ($SettleStages -contains $stage)") < driver.index(
        "& (Join-Path $PSScriptRoot $StageScripts[$stage])")
    assert "Restart-Computer" in _commands(scripts / "firstlogon.ps1")


def test_the_resume_task_outlives_cleanup_until_sysprep(scripts: Path) -> None:
    # A reboot settled before sysprep must come back: the task goes only in stage-sysprep.
    assert "Unregister-ScheduledTask" not in _commands(scripts / "stage-cleanup.ps1")
    sysprep = (scripts / "stage-sysprep.ps1").read_text(encoding="utf-8-sig")
    assert sysprep.index("Unregister-ScheduledTask") < sysprep.index("sysprep.exe")


def test_the_last_update_pass_restarts_for_a_pending_reboot_within_the_cap(
        scripts: Path) -> None:
    text = (scripts / "stage-updates.ps1").read_text(encoding="utf-8-sig")
    branch = text[text.index("if ($batch.Count -eq 0) {"):text.index("$downloader =")]
    assert "Get-OsbuildPendingReboot" in branch
    assert "$pass -lt $maxPasses" in branch and "Request-OsbuildUpdateRestart" in branch
    restart = text[text.index("function Request-OsbuildUpdateRestart {"):
                   text.index("\nwhile ($true) {")]
    assert "$State.reboot = $true" in restart
    assert "restarting to search again" in branch
    source = Path(sim_guest.__file__).read_text()
    assert 'restarting to search again")' in source


def test_settle_markers_read_as_the_simulated_guest_writes_them(scripts: Path) -> None:
    literals = _literals(scripts / "firstlogon.ps1")
    assert "reboot pending ({0}): restarting {1}/{2}" in literals
    assert "a reboot is still pending after {0} reboots: {1}" in literals
    source = Path(sim_guest.__file__).read_text()
    assert 'f"reboot pending ({signals}): restarting {self.settle_reboots}/{cap}"' in source
    assert 'f"a reboot is still pending after {self.settle_reboots} reboots: {signals}"' in source


# --------------------------------------------------------------------------- Windows Update


def test_windows_update_waits_for_the_network_and_retries_each_call(scripts: Path) -> None:
    text = (scripts / "stage-updates.ps1").read_text(encoding="utf-8-sig")
    assert text.index("Wait-OsbuildNetwork") < text.index("CreateUpdateSearcher")
    assert stages.UPDATE_HOST in _literals(scripts / "stage-updates.ps1")
    calls = re.findall(r"Invoke-OsbuildRetrying -Stage 'updates' -What '([^']+)'", text)
    assert calls == ["Windows Update search", "Windows Update download",
                     "Windows Update install"]
    for call in (r"\$searcher\.Search\(", r"\$downloader\.Download\(\)",
                 r"\$installer\.Install\(\)"):
        # every Windows Update call sits inside a retried action
        assert re.search(r"-Action \{ " + call, text), call
    lib = (scripts / "lib.ps1").read_text(encoding="utf-8-sig")
    retrying = _function(lib, "Invoke-OsbuildRetrying")
    assert "Start-Sleep -Seconds $Delay" in retrying and "$Delay = $Delay * 2" in retrying


def test_retry_markers_read_as_the_simulated_guest_writes_them(scripts: Path) -> None:
    literals = _literals(scripts / "lib.ps1")
    info = "{0} failed ({1}): retry {2}/{3} in {4}s"
    final = "{0} failed {1} times: {2}"
    assert info in literals and final in literals
    # PowerShell's -f and Python's format agree on these: the simulator writes the same text.
    assert info.format("Windows Update search", "x", 2, 5, 60) == \
        "Windows Update search failed (x): retry 2/5 in 60s"
    source = Path(sim_guest.__file__).read_text()
    assert 'f"{what} failed ({reason}): retry {attempt + 1}/{attempts} in {delay}s"' in source
    assert 'f"{what} failed {attempt} times: {reason}"' in source


# --------------------------------------------------------------------------- sysprep


def test_sysprep_result_is_checked_before_power_off(scripts: Path) -> None:
    path = scripts / "stage-sysprep.ps1"
    text = path.read_text(encoding="utf-8-sig")
    literals = _literals(path)
    assert r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State" in literals
    assert "ImageState" in literals and "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE" in literals
    assert r"System32\Sysprep\Panther\setuperr.log" in literals
    launch = re.findall(r'-ArgumentList "(/generalize[^"]*)"', text)
    assert len(launch) == 1 and "/quit" in launch[0] and "/shutdown" not in launch[0]
    assert "$process.ExitCode -ne 0" in text
    assert f"Select-Object -First {stages.SYSPREP_ERROR_LINES}" in text
    # the failure throws (the driver turns it into `sysprep:fail:<message>`), and only the
    # driver powers off, after the script returned
    assert "throw (" in text and "Stop-Computer" not in _commands(path)
    driver = (scripts / "firstlogon.ps1").read_text(encoding="utf-8-sig")
    assert driver.index("Join-Path $PSScriptRoot $StageScripts[$stage]") < driver.index(
        "Stop-Computer -Force")


def test_sysprep_failure_reads_as_the_simulated_guest_writes_it(scripts: Path) -> None:
    assert "sysprep exited {0}, image state {1}: {2}" in _literals(scripts / "stage-sysprep.ps1")
    source = Path(sim_guest.__file__).read_text()
    assert 'f"sysprep exited 0, image state {_IMAGE_STATE_COMPLETE}: {quoted}"' in source
    assert 'quoted = " | ".join(' in source
    assert "($errors -join ' | ')" in (scripts / "stage-sysprep.ps1").read_text(
        encoding="utf-8-sig")


def test_setuperr_lines_are_cut_like_the_simulated_guest_cuts_them(scripts: Path) -> None:
    text = (scripts / "stage-sysprep.ps1").read_text(encoding="utf-8-sig")
    match = re.search(r"\(\$_ -replace '([^']+)', ''\)", text)
    assert match
    assert match.group(1) == sim_guest.SETUPERR_PREFIX_RE.pattern
    line = ("2026-12-01 10:00:00, Error                 [0x0f0082] SYSPRP "
            "ActionPlatform::LaunchModule: Failure occurred")
    assert sim_guest.setuperr_message(line) == \
        "[0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred"


def test_marker_details_are_bounded_in_the_script_too(scripts: Path) -> None:
    from osbuild import markers

    lib = (scripts / "lib.ps1").read_text(encoding="utf-8-sig")
    assert (f"if ($clean.Length -gt {markers.DETAIL_MAX}) "
            f"{{ $clean = $clean.Substring(0, {markers.DETAIL_MAX}) }}") in lib
