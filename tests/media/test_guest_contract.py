"""Contract with the simulated Windows guest: real rendered media play through to power-off."""

from __future__ import annotations

import random

import pytest

from osbuild import markers
from osbuild.markers import Status
from osbuild.media import layout
from osbuild_sim import guest as sim_guest
from osbuild_sim import media as sim_media
from osbuild_sim.hypervisor import AttachedDevice, build_machine

from .helpers import EXAMPLES

# The stand-in installer each example's iso_image names (UEFI ones are prepared, prompt-less).
_SEEDS = {s.name: s for s in sim_media.seed_images()}


def _machine(spec, config_iso: bytes):
    uefi = spec.windows.firmware == "uefi"
    props = {
        "hw_firmware_type": spec.windows.firmware,
        "hw_machine_type": "q35" if uefi else "pc",
        "hw_disk_bus": spec.builder.disk_bus,
    }
    if spec.windows.tpm:
        props.update(hw_tpm_version="2.0", hw_tpm_model="tpm-crb")
    if spec.windows.secure_boot:
        props["os_secure_boot"] = "required"
    installer = _SEEDS[spec.windows.iso_image]
    virtio = _SEEDS[spec.virtio.iso_image]
    devices = [
        AttachedDevice("disk", spec.builder.disk_bus, 0, "blank", None, b"", props),
        AttachedDevice("cdrom", None, 1, "volume", "iso", installer.data, installer.properties),
        AttachedDevice("cdrom", None, None, "volume", "virtio", virtio.data, virtio.properties),
        AttachedDevice("cdrom", None, None, "volume", "config", config_iso, {}),
    ]
    return build_machine(devices, props)


@pytest.mark.parametrize("name", EXAMPLES)
def test_rendered_media_install_to_power_off(name, example_spec, render) -> None:
    spec = example_spec(name)
    media = render(spec)
    machine = _machine(spec, media.iso_path.read_bytes())
    events = list(sim_guest.boot(machine, rng=random.Random(7)))
    assert isinstance(events[-1].action, sim_guest.PowerOff)
    lines = [e.action.text for e in events if isinstance(e.action, sim_guest.ConsoleOutput)]
    seen = markers.parse_lines(lines, media.nonce)
    assert all(m.status != Status.FAIL for m in seen), seen
    starts = [m.stage for m in seen if m.status == Status.START]
    assert starts == ["winpe", "specialize", "firstlogon", *media.plan.stages]
    assert seen[-2:] == [markers.Marker("sysprep", Status.START),
                         markers.Marker("sysprep", Status.OK)]
    # The power-off protocol: sysprep:start stays on the console for the declared hold.
    start_line = next(e for e in events if isinstance(e.action, sim_guest.ConsoleOutput)
                      and markers.parse_line(e.action.text, media.nonce)
                      == markers.Marker("sysprep", Status.START))
    assert events[-1].at - start_line.at >= markers.SYSPREP_HOLD
    # what the guest wrote to its disk is what the spec asked for
    writes = [e.action.data for e in events if isinstance(e.action, sim_guest.WriteDisk)]
    record = sim_guest.read_disk_record(writes[-1])
    assert record is not None
    assert record["image_name"] == spec.windows.image_name
    assert record["build_id"] == media.plan.build_id
    assert record["sysprep"] is True


@pytest.mark.parametrize(("unread_hold", "latest"), [
    (0.0, None),  # real time: the declared hold, whoever reads
    (150.0, None),  # shorter than the declared hold: nothing to wait for
    (600.0, 600.0),  # speed 300: 2 wall seconds
    (1200.0, 900.0),  # speed 600: half the sysprep stage's 1800 s timeout at most
])
def test_the_hold_waits_for_a_read_up_to_a_wall_clock_floor(
        example_spec, render, unread_hold: float, latest: float | None) -> None:
    spec = example_spec("ws2022-standard.yaml")
    media = render(spec)
    events = list(sim_guest.boot(_machine(spec, media.iso_path.read_bytes()),
                                 rng=random.Random(7), unread_hold=unread_hold,
                                 scenario=sim_guest.GuestScenario(sysprep_seconds=0)))

    def marker_event(status: Status) -> sim_guest.GuestEvent:
        return next(e for e in events if isinstance(e.action, sim_guest.ConsoleOutput)
                    and markers.parse_line(e.action.text, media.nonce)
                    == markers.Marker("sysprep", status))

    start, ok = marker_event(Status.START), marker_event(Status.OK)
    awaits = [e for e in events if isinstance(e.action, sim_guest.AwaitConsoleRead)]
    # The guest's own time is not stretched: the wait is for whoever plays the events.
    assert ok.at - start.at == pytest.approx(markers.SYSPREP_HOLD, abs=1.0)
    if latest is None:
        assert awaits == []
    else:
        [hold] = awaits
        assert hold.at == pytest.approx(start.at + markers.SYSPREP_HOLD, abs=1.0)
        assert hold.action.since == pytest.approx(start.at, abs=0.01)
        assert hold.action.latest - start.at == pytest.approx(latest, abs=0.01)
        assert events.index(hold) < events.index(ok)


def _play(spec, media, config_iso: bytes, **scenario):
    machine = _machine(spec, config_iso)
    events = list(sim_guest.boot(machine, rng=random.Random(7),
                                 scenario=sim_guest.GuestScenario(**scenario)))
    lines = [e.action.text for e in events if isinstance(e.action, sim_guest.ConsoleOutput)]
    writes = [e.action.data for e in events if isinstance(e.action, sim_guest.WriteDisk)]
    return markers.parse_lines(lines, media.nonce), sim_guest.read_disk_record(writes[-1])


def test_a_store_updated_app_is_removed_before_sysprep(example_spec, render) -> None:
    # Issue 13 item 4: the Store updated an app for the build user (it had run before the
    # policy applied); the rendered sysprep stage removes it, so sysprep generalizes.
    spec = example_spec("win11-enterprise.yaml")
    media = render(spec)
    seen, record = _play(spec, media, media.iso_path.read_bytes(), store_updates_app=True)
    assert all(m.status != Status.FAIL for m in seen), seen
    assert markers.Marker("sysprep", Status.INFO,
                          f"removing {sim_guest.STORE_UPDATED_PACKAGE}") in seen
    assert record["appx_removed"] == [sim_guest.STORE_UPDATED_PACKAGE]
    assert record["sysprep"] is True


def test_without_the_removal_sysprep_refuses_to_generalize(example_spec, render) -> None:
    from osbuild.media import configiso

    spec = example_spec("win11-enterprise.yaml")
    media = render(spec)
    script = media.root / layout.SCRIPTS_DIR / "stage-sysprep.ps1"
    script.write_bytes(script.read_bytes().replace(b"Remove-OsbuildBlockingAppx\n", b""))
    tampered = media.iso_path.with_name("tampered.iso")
    configiso.build_iso(media.root, tampered)
    seen, record = _play(spec, media, tampered.read_bytes(), store_updates_app=True)
    [failure] = [m for m in seen if m.status == Status.FAIL]
    assert failure.stage == "sysprep"
    assert failure.detail.startswith(f"SYSPRP Package {sim_guest.STORE_UPDATED_PACKAGE} was "
                                     "installed for a user, but not provisioned for all users")
    assert not record.get("sysprep")


def test_the_store_policy_keeps_apps_from_updating(example_spec, render) -> None:
    # With the answer file's AutoDownload=2 policy nothing is updated per user; a server has
    # no Store at all.
    for name in ("win11-enterprise.yaml", "ws2022-standard.yaml"):
        spec = example_spec(name)
        media = render(spec)
        _seen, record = _play(spec, media, media.iso_path.read_bytes())
        assert not record.get("appx_user_updated") and not record.get("appx_removed"), name


def _win11_with_vtpm(example_spec, tmp_path):
    from osbuild.spec import load_spec

    source = example_spec("win11-enterprise.yaml").source_path
    text = source.read_text().replace("tpm: false", "tpm: true")
    source.write_text(text)
    return load_spec(source)


def test_device_encryption_is_prevented_on_windows_11_with_a_vtpm(
        example_spec, render, tmp_path) -> None:
    # Issue 13 item 8: 24H2 encrypts C: during OOBE of a clean install with a TPM.
    spec = _win11_with_vtpm(example_spec, tmp_path)
    assert spec.windows.tpm
    media = render(spec)
    seen, record = _play(spec, media, media.iso_path.read_bytes())
    assert all(m.status != Status.FAIL for m in seen), seen
    assert record["device_encryption"] == "FullyDecrypted"


def test_without_the_policy_cleanup_refuses_an_encrypted_disk(
        example_spec, render, tmp_path) -> None:
    from osbuild.media import configiso, unattend

    spec = _win11_with_vtpm(example_spec, tmp_path)
    media = render(spec)
    answer = media.root / layout.ANSWER_FILE
    prevent = unattend.CLIENT_REGISTRY[0]
    assert prevent.name == "PreventDeviceEncryption"
    answer.write_text(answer.read_text().replace(prevent.reg_add, "cmd.exe /c rem"))
    tampered = media.iso_path.with_name("tampered.iso")
    configiso.build_iso(media.root, tampered)
    seen, record = _play(spec, media, tampered.read_bytes())
    [failure] = [m for m in seen if m.status == Status.FAIL]
    assert (failure.stage, failure.detail) == (
        "cleanup", "C: is EncryptionInProgress: device encryption was not prevented")
    assert not record.get("sysprep")
