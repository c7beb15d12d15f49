"""Accounts in the rendered scripts: found by well-known SID, never keeping the build password.

Localised media translate the built-in names (Administratoren, Administrateur); the SIDs
S-1-5-32-544 (Administrators) and S-1-5-21-<machine>-500 (the built-in Administrator) are
the same on every Windows (Microsoft, "Well-known SIDs").
"""

from __future__ import annotations

from pathlib import Path

from . import pwsh
from .helpers import MINIMAL_SPEC, rendered_script, write_spec


def test_the_library_finds_accounts_by_sid(example_spec, render) -> None:
    lib = rendered_script(render(example_spec("ws2022-standard.yaml")), "lib.ps1")
    assert pwsh.problems(pwsh.parse(lib)) == []
    builtin = pwsh.function(lib, "Get-OsbuildBuiltinAdministrator")
    assert "$_.SID.Value -match '^S-1-5-21-\\d+-\\d+-\\d+-500$'" in builtin
    assert "Administrator'" not in builtin  # no name in the lookup
    resolve = pwsh.function(lib, "Resolve-OsbuildAccountName")
    assert "System.Security.Principal.SecurityIdentifier" in resolve
    assert ".Translate([System.Security.Principal.NTAccount])" in resolve


def test_cleanup_resets_the_builtin_administrator_found_by_sid(example_spec, render) -> None:
    for name in ("ws2022-standard.yaml", "win11-enterprise.yaml"):
        cleanup = rendered_script(render(example_spec(name)), "stage-cleanup.ps1")
        commands = pwsh.commands(cleanup)
        assert "Get-OsbuildBuiltinAdministrator" in commands, name
        # every account that had the build password gets a throwaway one, then is disabled
        # unless cloudbase-init manages it
        assert commands.index("Set-LocalUser") < commands.index("Disable-LocalUser")
        assert "New-OsbuildThrowawayPassword" in commands
        assert "-Name 'Administrator'" not in cleanup


def test_cleanup_refuses_to_capture_an_encrypted_client(example_spec, render) -> None:
    cleanup = rendered_script(render(example_spec("win11-enterprise.yaml")), "stage-cleanup.ps1")
    assert "Get-BitLockerVolume" in pwsh.commands(cleanup)
    assert "-ne 'FullyDecrypted'" in cleanup


def test_cloudbase_init_groups_are_planned_by_sid(tmp_path: Path, render) -> None:
    body = MINIMAL_SPEC.replace(
        "msi: CloudbaseInitSetup_x64.msi",
        "msi: CloudbaseInitSetup_x64.msi\n  groups: [administrators, Remote Desktop Users, "
        "Backup Operators]")
    from osbuild.spec import load_spec

    media = render(load_spec(write_spec(tmp_path / "spec", body)))
    assert media.plan.cloudbase_init.groups == ("S-1-5-32-544", "S-1-5-32-555",
                                                "Backup Operators")
    stage = rendered_script(media, "stage-cloudbaseinit.ps1")
    assert "Resolve-OsbuildAccountName" in pwsh.commands(stage)
    assert "@($Plan.cloudbase_init.groups)" in stage
    # the rendered conf keeps the English names; the guest rewrites its groups= line
    assert "(?m)^groups=.*$" in stage


def test_default_groups_are_the_administrators_sid(example_spec, render) -> None:
    media = render(example_spec("ws2022-standard.yaml"))
    assert media.plan.cloudbase_init.groups == ("S-1-5-32-544",)


def test_clients_hold_store_updates_and_consumer_apps_during_the_build(
        example_spec, render) -> None:
    from osbuild.media import unattend

    from .test_answerfile import _specialize_commands, answer_root

    media = render(example_spec("win11-enterprise.yaml"))
    specialize = _specialize_commands(answer_root(media.root))
    build_only = [value for value in unattend.CLIENT_REGISTRY if value.build_only]
    assert {value.name for value in build_only} == {"AutoDownload",
                                                    "DisableWindowsConsumerFeatures"}
    for value in build_only:
        assert value.reg_add in specialize
    # ... and the image ships Windows' defaults: each is removed again before sysprep
    lib = rendered_script(media, "lib.ps1")
    restore = pwsh.function(lib, "Restore-OsbuildBuildPolicies")
    for value in build_only:
        assert (f"Remove-ItemProperty -LiteralPath '{value.ps_path}' `\n"
                f"        -Name '{value.name}'" in restore)
    sysprep = pwsh.commands(rendered_script(media, "stage-sysprep.ps1"))
    # stage-sysprep starts sysprep.exe with Start-Process (to read its exit code)
    assert sysprep.index("Remove-OsbuildBlockingAppx") < sysprep.index("Start-Process")
    assert sysprep.index("Restore-OsbuildBuildPolicies") < sysprep.index("Start-Process")


def test_blocking_packages_are_found_by_full_name_and_deprovisioned(
        example_spec, render) -> None:
    # A Store-updated app keeps its Name but not its PackageFullName: matching provisioned
    # packages by name (as before) left it in place and sysprep failed.
    lib = rendered_script(render(example_spec("win11-enterprise.yaml")), "lib.ps1")
    remove = pwsh.function(lib, "Remove-OsbuildBlockingAppx")
    assert "$provisionedNames -notcontains $_.PackageFullName" in remove
    commands = pwsh.commands(remove)
    assert commands.index("Remove-AppxPackage") < commands.index("Remove-AppxProvisionedPackage")
    assert "-AllUsers" in remove


def test_serial_writes_have_a_timeout(example_spec, render) -> None:
    lib = rendered_script(render(example_spec("ws2022-standard.yaml")), "lib.ps1")
    serial = pwsh.function(lib, "Write-OsbuildSerial")
    assert serial.index("$port.WriteTimeout = 5000") < serial.index("$port.Open()")


def test_no_publisher_certificate_is_imported(example_spec, render) -> None:
    # virtio-win's Windows 10+ drivers are attestation signed by Microsoft: nothing to trust.
    virtio = rendered_script(render(example_spec("ws2022-standard.yaml")), "stage-virtio.ps1")
    assert "TrustedPublisher" not in virtio.split("$ErrorActionPreference")[1]
    assert "Get-AuthenticodeSignature" not in pwsh.commands(virtio)
