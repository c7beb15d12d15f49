"""The simulated Windows install: driven by rendered config ISOs, failing the way Windows does."""

from __future__ import annotations

import itertools
import random
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from osbuild import markers, resources
from osbuild.media import configiso, layout, windows
from osbuild.media.render import RenderedMedia, render_media
from osbuild.spec import BuildSpec, load_spec
from osbuild_sim import media
from osbuild_sim.guest import (
    ConsoleOutput,
    GuestEvent,
    GuestScenario,
    Metadata,
    PostPassword,
    PowerOff,
    WriteDisk,
    boot,
    read_disk_record,
)
from osbuild_sim.hypervisor import AttachedDevice, Machine, boot_properties, build_machine

NONCE = "5f0c3e2a9b8d7c6e5f4a3b2c1d0e9f8a"
BUILD_ID = "20261126t031500-d00d00"
EXAMPLES = sorted(p.name for p in resources.examples_dir().glob("*.yaml"))
SEEDS = {seed.name: seed.data for seed in media.seed_images()}


# --------------------------------------------------------------------------- helpers


def load_example(tmp_path: Path, name: str, edit: Callable[[str], str] | None = None) -> BuildSpec:
    """An example spec copied beside a stand-in MSI (optionally edited)."""
    folder = tmp_path / "spec"
    folder.mkdir(exist_ok=True)
    text = (resources.examples_dir() / name).read_text()
    (folder / name).write_text(edit(text) if edit else text)
    (folder / "CloudbaseInitSetup_x64.msi").write_bytes(media.cloudbase_msi_standin())
    return load_spec(folder / name)


def render(spec: BuildSpec, out: Path, nonce: str = NONCE) -> RenderedMedia:
    return render_media(spec, out, build_id=BUILD_ID, nonce=nonce, password="Xy9!long-enough")


def rebuild(rendered: RenderedMedia, out: Path, files: dict[str, bytes | None]) -> bytes:
    """The config ISO with some files replaced (or removed, for None)."""
    tree = out / "tree"
    shutil.copytree(rendered.root, tree)
    for relative, data in files.items():
        path = tree / relative
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
    configiso.build_iso(tree, out / "config.iso")
    return (out / "config.iso").read_bytes()


def machine_for(
    spec: BuildSpec,
    config: bytes,
    *,
    installer: bytes | None = None,
    virtio: bool = True,
    firmware: str | None = None,
    tpm: bool | None = None,
    disk_bus: str | None = None,
    cdrom_first: bool = False,
) -> Machine:
    """The builder osbuild asks Nova for: the target volume at 0 carrying the hardware
    properties, the installer cdrom next, then VirtIO and config cdroms."""
    firmware = firmware or spec.windows.firmware
    props = {"hw_firmware_type": firmware, "os_type": "windows",
             "hw_disk_bus": disk_bus or spec.builder.disk_bus}
    if firmware == "uefi":
        props["hw_machine_type"] = "q35"
        if spec.windows.secure_boot:
            props["os_secure_boot"] = "required"
    if spec.windows.tpm if tpm is None else tpm:
        props["hw_tpm_version"] = "2.0"
    # Nova reads the hardware from the boot_index 0 volume's image metadata.
    disk_index, cdrom_index = (1, 0) if cdrom_first else (0, 1)
    devices = [
        AttachedDevice("disk", None, disk_index, "volume", "target", b"",
                       {} if cdrom_first else props),
        AttachedDevice("cdrom", None, cdrom_index, "volume", "iso",
                       installer if installer is not None else SEEDS[spec.windows.iso_image],
                       props if cdrom_first else {}),
    ]
    if virtio:
        devices.append(AttachedDevice("cdrom", None, None, "volume", "virtio",
                                      SEEDS["virtio-win.iso"], {}))
    devices.append(AttachedDevice("cdrom", None, None, "volume", "config", config, {}))
    return build_machine(devices, boot_properties(devices, None))


def play(machine: Machine, limit: int | None = None, **kwargs: object) -> list[GuestEvent]:
    events = boot(machine, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    return list(itertools.islice(events, limit) if limit else events)


def lines(events: Iterable[GuestEvent]) -> list[str]:
    return [e.action.text for e in events if isinstance(e.action, ConsoleOutput)]


def found(events: Iterable[GuestEvent], nonce: str = NONCE) -> list[markers.Marker]:
    return markers.parse_lines(lines(events), nonce)


def progress(events: Iterable[GuestEvent], nonce: str = NONCE) -> list[str]:
    """start/ok/fail markers as ``stage:status`` (info markers are progress details)."""
    return [f"{m.stage}:{m.status.value}" for m in found(events, nonce)
            if m.status is not markers.Status.INFO]


def expected_progress(plan: layout.GuestPlan) -> list[str]:
    out = ["winpe:start", "winpe:ok", "specialize:start", "specialize:ok",
           "firstlogon:start", "firstlogon:ok"]
    for stage in plan.stages:
        out += [f"{stage}:start", f"{stage}:ok"]
    return out


def disk_writes(events: Iterable[GuestEvent]) -> list[dict[str, object]]:
    out = []
    for event in events:
        if isinstance(event.action, WriteDisk):
            record = read_disk_record(event.action.data)
            assert record is not None
            out.append(record)
    return out


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("example", EXAMPLES)
def test_rendered_example_plays_to_power_off(tmp_path: Path, example: str) -> None:
    spec = load_example(tmp_path, example)
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()))

    assert progress(events) == expected_progress(rendered.plan)
    times = [e.at for e in events]
    assert times == sorted(times)
    assert isinstance(events[-1].action, PowerOff)
    # sysprep writes the disk, posts sysprep:ok to the metadata service (what outlives the
    # console), then the final marker (sysprep:ok), then the power-off
    assert isinstance(events[-4].action, WriteDisk)
    assert events[-3].action == PostPassword(markers.sysprep_ack(NONCE))
    record = read_disk_record(events[-4].action.data)
    assert record is not None
    assert record["sysprep"] is True
    assert record["image_name"] == spec.windows.image_name
    assert record["build"] == windows.BUILD_NUMBERS[spec.windows.version]
    assert record["build_id"] == BUILD_ID
    assert record["firmware"] == spec.windows.firmware
    assert record["disk_bus"] == spec.builder.disk_bus
    assert record["cloudbase_init"] is True
    assert record["virtio_guest_tools"] is spec.virtio.guest_tools
    storage = windows.STORAGE_DRIVER_FOR_BUS[spec.builder.disk_bus]
    assert storage in record["drivers"]
    passes = record["update_passes"]
    assert isinstance(passes, int)
    assert (passes >= 1) if spec.updates.enabled else passes == 0
    assert passes <= spec.updates.max_passes
    # Setup itself takes a realistic while before the first-logon driver starts.
    first_logon = next(e.at for e in events
                       if isinstance(e.action, ConsoleOutput) and ":firstlogon:start" in
                       e.action.text)
    assert first_logon > 10 * 60


def test_markers_carry_the_nonce_read_from_the_iso(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    other = "ffffffffffffffffffffffffffffffff"
    rendered = render(spec, tmp_path / "out", nonce=other)
    events = play(machine_for(spec, rendered.iso_path.read_bytes()))
    assert found(events, NONCE) == []
    assert progress(events, other) == expected_progress(rendered.plan)
    assert all(other in line for line in lines(events) if line.startswith("OSBUILD:"))


def test_a_builder_without_a_metadata_service_says_it_could_not_post_sysprep_ok(
        tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()),
                  metadata=Metadata(network=False))
    assert not any(isinstance(e.action, PostPassword) for e in events)
    said = markers.Marker("sysprep", markers.Status.INFO, "sysprep:ok not posted to the "
                          "metadata service: Unable to connect to the remote server")
    assert said in found(events)
    assert isinstance(events[-1].action, PowerOff)


def test_user_scripts_run_in_plan_order(tmp_path: Path) -> None:
    folder = tmp_path / "spec"
    folder.mkdir()
    for name in ("zeta.ps1", "alpha.ps1"):
        (folder / name).write_text("Write-Output 'hello'\n")
    spec = load_example(tmp_path, "ws2019-core-local.yaml",
                        lambda text: text + "scripts: [zeta.ps1, alpha.ps1]\n")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()))
    names = [p.rsplit("/", 1)[-1] for p in rendered.plan.scripts]
    assert [m.detail for m in found(events) if m.stage == "scripts" and m.detail] == [
        f"running {name}" for name in names
    ]
    assert disk_writes(events)[-1]["scripts"] == names
    assert progress(events) == expected_progress(rendered.plan)


def test_sata_target_needs_no_driver(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2019-core-local.yaml",
                        lambda text: text.replace("winpe_drivers: [viostor, NetKVM]",
                                                  "winpe_drivers: [NetKVM]")
                        .replace("disk_bus: virtio", "disk_bus: sata"))
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()))
    assert isinstance(events[-1].action, PowerOff)


# --------------------------------------------------------------------------- Setup failures


def assert_setup_stopped_silently(events: list[GuestEvent], expected: list[str]) -> None:
    assert progress(events) == expected
    assert not any(isinstance(e.action, WriteDisk | PowerOff) for e in events)


def test_malformed_answer_file_stops_setup_silently(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    answer = (rendered.root / layout.ANSWER_FILE).read_bytes()
    broken = rebuild(rendered, tmp_path / "b",
                     {layout.ANSWER_FILE: answer.replace(b"</unattend>", b"")})
    events = play(machine_for(spec, broken))
    assert_setup_stopped_silently(events, [])
    # Nothing after the firmware handed over to the installer.
    assert lines(events)[-1] == "Booting from DVD/CD..."


def test_edition_the_media_lacks(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    answer = (rendered.root / layout.ANSWER_FILE).read_bytes()
    wrong = rebuild(rendered, tmp_path / "b", {layout.ANSWER_FILE: answer.replace(
        b"Windows Server 2022 SERVERSTANDARD<", b"Windows Server 2022 SERVERAZUREEDITION<")})
    assert_setup_stopped_silently(play(machine_for(spec, wrong)), ["winpe:start"])
    # The same answer file on media that has the edition installs fine.
    fine = play(machine_for(spec, rendered.iso_path.read_bytes()))
    assert isinstance(fine[-1].action, PowerOff)


def test_client_edition_missing_from_the_media(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "win11-enterprise.yaml",
                        lambda text: text.replace("edition: Enterprise",
                                                  "edition: Pro for Workstations")
                        .replace("product_key: kms", ""))
    rendered = render(spec, tmp_path / "out")
    assert_setup_stopped_silently(play(machine_for(spec, rendered.iso_path.read_bytes())),
                                  ["winpe:start"])


def test_virtio_disk_without_its_driver_path(tmp_path: Path) -> None:
    # Media rendered for a SATA disk (no viostor path) on a builder whose disk is virtio.
    spec = load_example(tmp_path, "ws2019-core-local.yaml",
                        lambda text: text.replace("winpe_drivers: [viostor, NetKVM]",
                                                  "winpe_drivers: [NetKVM]")
                        .replace("disk_bus: virtio", "disk_bus: sata"))
    rendered = render(spec, tmp_path / "out")
    config = rendered.iso_path.read_bytes()
    assert_setup_stopped_silently(play(machine_for(spec, config, disk_bus="virtio")),
                                  ["winpe:start"])
    assert isinstance(play(machine_for(spec, config))[-1].action, PowerOff)


def test_driver_path_to_a_folder_the_virtio_iso_lacks(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    answer = (rendered.root / layout.ANSWER_FILE).read_bytes()
    assert b"\\viostor\\2k22\\amd64<" in answer
    moved = rebuild(rendered, tmp_path / "b", {layout.ANSWER_FILE: answer.replace(
        b"\\viostor\\2k22\\amd64<", b"\\viostor\\2k99\\amd64<")})
    assert_setup_stopped_silently(play(machine_for(spec, moved)), ["winpe:start"])


def test_scsi_disk_needs_vioscsi_not_viostor(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2019-core-local.yaml")  # loads viostor and NetKVM only
    rendered = render(spec, tmp_path / "out")
    config = rendered.iso_path.read_bytes()
    assert_setup_stopped_silently(play(machine_for(spec, config, disk_bus="scsi")),
                                  ["winpe:start"])


def test_driver_paths_need_the_virtio_iso_attached(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes(), virtio=False))
    assert_setup_stopped_silently(events, ["winpe:start"])


def test_uefi_with_the_stock_prompting_efi_image(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2025-datacenter-uefi.yaml")
    rendered = render(spec, tmp_path / "out")
    stock = SEEDS["windows-server-2025-x64.iso"]
    events = play(machine_for(spec, rendered.iso_path.read_bytes(), installer=stock))
    assert lines(events)[-1] == "Press any key to boot from CD or DVD......"
    assert_setup_stopped_silently(events, [])


def test_bios_media_boots_without_preparation(tmp_path: Path) -> None:
    # The prompt-less switch only matters for UEFI: BIOS loads etfsboot.com.
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes(),
                              installer=SEEDS["windows-server-2022-x64.iso"]))
    assert isinstance(events[-1].action, PowerOff)


def test_mbr_layout_on_uefi_aborts_setup(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")  # BIOS layout
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes(), firmware="uefi",
                              installer=media.windows_iso("2022", noprompt=True)))
    assert_setup_stopped_silently(events, ["winpe:start"])


def test_efi_partition_on_bios_aborts_setup(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2025-datacenter-uefi.yaml",
                        lambda text: text.replace("secure_boot: true", "secure_boot: false"))
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes(), firmware="bios"))
    assert_setup_stopped_silently(events, ["winpe:start"])


def test_windows_11_without_tpm_needs_the_labconfig_bypass(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "win11-enterprise.yaml")  # tpm: false -> bypass rendered
    rendered = render(spec, tmp_path / "out")
    answer = (rendered.root / layout.ANSWER_FILE).read_text()
    assert "LabConfig" in answer
    without = re.sub(r"<RunSynchronousCommand[^>]*>(?:(?!</RunSynchronousCommand>).)*"
                     r"LabConfig.*?</RunSynchronousCommand>", "", answer, flags=re.S)
    assert "LabConfig" not in without
    config = rebuild(rendered, tmp_path / "b", {layout.ANSWER_FILE: without.encode()})
    assert_setup_stopped_silently(play(machine_for(spec, config)), ["winpe:start"])
    # With a vTPM (and Secure Boot) the checks pass without any bypass.
    events = play(machine_for(spec, config, tpm=True))
    assert isinstance(events[-1].action, PowerOff)
    # And the bypass as rendered works without a vTPM.
    assert isinstance(play(machine_for(spec, rendered.iso_path.read_bytes()))[-1].action,
                      PowerOff)


def test_without_any_bootable_device() -> None:
    blank = [AttachedDevice("disk", None, 0, "blank", None, b"", {})]
    bios = play(build_machine(blank, {}))
    assert lines(bios)[-1] == "No bootable device."
    uefi = play(build_machine(blank, {"hw_firmware_type": "uefi", "hw_machine_type": "q35"}))
    assert lines(uefi)[-2:] == ["BdsDxe: No bootable option or device was found.",
                                "BdsDxe: Press any key to enter the Boot Manager Menu."]


def test_a_non_windows_cdrom_is_not_an_installer(tmp_path: Path) -> None:
    devices = [AttachedDevice("disk", None, 0, "blank", None, b"", {}),
               AttachedDevice("cdrom", None, 1, "volume", "v", SEEDS["virtio-win.iso"], {})]
    events = play(build_machine(devices, {}))
    assert "Boot failed: Could not read from CDROM (code 0004)" in lines(events)
    assert lines(events)[-1] == "No bootable device."


# --------------------------------------------------------------------------- boot order


def test_bios_cdrom_first_prompts_then_boots_the_disk(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes(), cdrom_first=True))
    # After the first reboot the disk is bootable, so etfsboot prompts, times out, and the
    # firmware moves on to the disk.
    assert "Press any key to boot from CD or DVD.." in lines(events)
    assert progress(events) == expected_progress(rendered.plan)


def test_uefi_noprompt_cdrom_first_starts_setup_over(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2025-datacenter-uefi.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes(), cdrom_first=True),
                  limit=200)
    seen = progress(events)
    assert seen.count("winpe:start") >= 3
    assert "specialize:start" not in seen


# --------------------------------------------------------------------------- stage failures


def test_cloudbase_msi_that_does_not_match_the_plan(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    tampered = rebuild(rendered, tmp_path / "b",
                       {layout.CLOUDBASE_MSI: b"not the MSI the plan names"})
    events = play(machine_for(spec, tampered))
    last = found(events)[-1]
    assert (last.stage, last.status) == ("cloudbaseinit", markers.Status.FAIL)
    assert "sha256" in last.detail
    assert not any(isinstance(e.action, PowerOff) for e in events)


def test_scenario_setup_hangs(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()),
                  scenario=GuestScenario(setup_hangs=True))
    assert_setup_stopped_silently(events, ["winpe:start"])


def test_scenario_stage_fails_with_a_message(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()),
                  scenario=GuestScenario(fail_stage="updates", fail_message="0x80240022"))
    assert progress(events)[-2:] == ["updates:start", "updates:fail"]
    assert found(events)[-1].detail == "0x80240022"
    assert not any(isinstance(e.action, PowerOff) for e in events)


def test_scenario_unexpected_power_off(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()),
                  scenario=GuestScenario(power_off_at_stage="cloudbaseinit"))
    assert progress(events)[-1] == "cloudbaseinit:start"
    assert isinstance(events[-1].action, PowerOff)
    assert disk_writes(events)[-1]["sysprep"] is False


def test_scenario_endless_updates(tmp_path: Path) -> None:
    spec = load_example(tmp_path, "ws2022-standard.yaml")  # max_passes: 3
    rendered = render(spec, tmp_path / "out")
    events = play(machine_for(spec, rendered.iso_path.read_bytes()), limit=400,
                  scenario=GuestScenario(endless_updates=True))
    passes = [m.detail for m in found(events)
              if m.stage == "updates" and re.match(r"pass \d+/3: \d+ updates", m.detail)]
    assert len(passes) > spec.updates.max_passes
    assert "cleanup:start" not in progress(events)
