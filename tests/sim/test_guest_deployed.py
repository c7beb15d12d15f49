"""An instance booted from a captured image: cloudbase-init's log lines and its password."""

from __future__ import annotations

import base64
import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from osbuild_sim.guest import (
    ConsoleOutput,
    GuestEvent,
    GuestScenario,
    Metadata,
    PostPassword,
    boot,
    disk_record_bytes,
    read_disk_record,
)
from osbuild_sim.hypervisor import AttachedDevice, Machine, build_machine

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ (INFO|ERROR) [a-z_.]+ \[-\] .+$"
)
DONE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ INFO cloudbaseinit\.init \[-\] "
    r"Plugins execution done$"
)


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": 1, "os": "windows", "image_name": "Windows Server 2022 SERVERSTANDARD",
        "edition_id": "ServerStandard", "build": 20348, "firmware": "bios",
        "machine_type": "pc", "disk_bus": "virtio", "drivers": ["NetKVM", "viostor"],
        "virtio_guest_tools": True, "qemu_ga": True, "cloudbase_init": True,
        "cloudbase_init_metadata_services": [
            "cloudbaseinit.metadata.services.configdrive.ConfigDriveService",
            "cloudbaseinit.metadata.services.httpservice.HttpService",
        ],
        "update_passes": 1, "scripts": [], "sysprep": True, "build_id": "b", "stage": "sysprep",
    }
    base.update(changes)
    return base


def instance(disk: dict[str, Any] | bytes, props: dict[str, str] | None = None) -> Machine:
    data = disk if isinstance(disk, bytes) else disk_record_bytes(disk)
    devices = [AttachedDevice("disk", None, 0, "image", "img", data, {})]
    return build_machine(devices, props or {"os_type": "windows"})


def play(machine: Machine, **kwargs: Any) -> list[GuestEvent]:
    return list(boot(machine, rng=random.Random(3), **kwargs))


def console(events: list[GuestEvent]) -> list[str]:
    return [e.action.text for e in events if isinstance(e.action, ConsoleOutput)]


def passwords(events: list[GuestEvent]) -> list[str]:
    return [e.action.encrypted for e in events if isinstance(e.action, PostPassword)]


@pytest.fixture(scope="module")
def keypair() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, public + " nova-generated"


def test_disk_record_round_trip() -> None:
    data = disk_record_bytes(record())
    assert read_disk_record(data) == record()
    assert read_disk_record(data + b"\x00" * 4096) == record()  # a disk is padded with zeros
    assert read_disk_record(b"") is None
    assert read_disk_record(b"\x00" * 512) is None
    assert read_disk_record(data[:-5]) is None


def test_cloudbase_init_log_lines_and_the_password(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, public = keypair
    started = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)
    events = play(instance(record()), public_key=public, started_at=started)

    lines = console(events)
    logs = [line for line in lines if "cloudbaseinit" in line]
    assert logs and all(LOG_LINE.match(line) for line in logs)
    assert any(line.endswith("INFO cloudbaseinit.init [-] Metadata service loaded: "
                             "'HttpService'") for line in logs)
    assert any(line.endswith("Executing plugin 'SetUserPasswordPlugin'") for line in logs)
    assert DONE.match(logs[-1])
    assert logs[0].startswith("2026-11-26 03:")
    times = [e.at for e in events]
    assert times == sorted(times)

    [encrypted] = passwords(events)
    password = private.decrypt(base64.b64decode(encrypted), padding.PKCS1v15()).decode()
    assert len(password) >= 20
    assert password not in "\n".join(lines)
    # The password is posted before cloudbase-init reports it is done.
    posted = next(e.at for e in events if isinstance(e.action, PostPassword))
    # Two runs: specialize (conf\Unattend.xml), then the service after the reboot.
    done = [e.at for e in events
            if isinstance(e.action, ConsoleOutput) and DONE.match(e.action.text)]
    assert len(done) == 2
    assert done[0] < posted <= done[1]


def test_each_boot_gets_a_new_password(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, public = keypair
    first = passwords(play(instance(record()), public_key=public))[0]
    second = passwords(play(instance(record()), public_key=public))[0]
    decrypt = lambda blob: private.decrypt(base64.b64decode(blob), padding.PKCS1v15())  # noqa: E731
    assert decrypt(first) != decrypt(second)


def test_no_keypair_no_password() -> None:
    events = play(instance(record()))
    assert passwords(events) == []
    assert DONE.match(console(events)[-1])


def test_scenario_no_password(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    events = play(instance(record()), public_key=keypair[1],
                  scenario=GuestScenario(no_password=True))
    assert passwords(events) == []
    assert DONE.match(console(events)[-1])


def test_scenario_wrong_key(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, public = keypair
    [encrypted] = passwords(play(instance(record()), public_key=public,
                                 scenario=GuestScenario(wrong_key_password=True)))
    # OpenSSL's implicit rejection returns random bytes instead of raising for PKCS#1 v1.5.
    try:
        plain: bytes | None = private.decrypt(base64.b64decode(encrypted), padding.PKCS1v15())
    except ValueError:
        plain = None
    assert plain is None or not (plain.isascii() and plain.decode().isprintable()
                                 and len(plain) >= 20)


def test_scenario_cloudbase_init_never_finishes(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    events = play(instance(record()), public_key=keypair[1],
                  scenario=GuestScenario(cloudbase_init_never_finishes=True))
    assert not any(DONE.match(line) for line in console(events))
    assert passwords(events) == []


def test_a_non_rsa_key_gets_no_password() -> None:
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    events = play(instance(record()), public_key=public)
    assert passwords(events) == []
    assert any(" ERROR " in line for line in console(events))


def test_image_without_cloudbase_init_is_silent(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    events = play(instance(record(cloudbase_init=False)), public_key=keypair[1])
    assert not any("cloudbaseinit" in line for line in console(events))
    assert passwords(events) == []


def test_image_that_was_never_sysprepped(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    events = play(instance(record(sysprep=False)), public_key=keypair[1])
    assert not any("cloudbaseinit" in line for line in console(events))


def test_missing_storage_driver_never_boots(keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    # Built on SATA without viostor, deployed on virtio: INACCESSIBLE_BOOT_DEVICE.
    built_on_sata = record(disk_bus="sata", drivers=["NetKVM"], virtio_guest_tools=False)
    events = play(instance(built_on_sata), public_key=keypair[1])
    assert console(events) == ["SeaBIOS (version 1.16.3-debian-1.16.3-2)",
                               console(events)[1], "Booting from Hard Disk..."]
    assert passwords(events) == []
    fine = play(instance(built_on_sata, {"hw_disk_bus": "sata"}), public_key=keypair[1])
    assert len(passwords(fine)) == 1


def test_firmware_must_match_the_image() -> None:
    uefi_image = record(firmware="uefi", machine_type="q35")
    events = play(instance(uefi_image))
    assert console(events)[-1] == "No bootable device."
    booted = play(instance(uefi_image, {"hw_firmware_type": "uefi", "hw_machine_type": "q35"}))
    assert DONE.match(console(booted)[-1])


def test_english_group_names_fail_on_german_windows() -> None:
    # cloudbase-init adds its user with NetLocalGroupAddMembers by name: German Windows has
    # no group `Administrators` (it is `Administratoren`, S-1-5-32-544).
    lines = console(play(instance(record(language="de-DE",
                                         cloudbase_init_groups=["Administrators"]))))
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1 and "Cannot add user to group 'Administrators'" in errors[0]
    assert all(LOG_LINE.match(line) for line in errors)
    fine = console(play(instance(record(language="de-DE",
                                        cloudbase_init_groups=["Administratoren"]))))
    assert not [line for line in fine if " ERROR " in line]


def test_only_the_http_metadata_service_takes_the_password(
        keypair: tuple[rsa.RSAPrivateKey, str]) -> None:
    # cloudbase-init tries its metadata_services in order (cloudbaseinit/metadata/factory.py);
    # of them only HttpService can post a password (cloudbase-init docs, "Services").
    drive_first = record()  # ConfigDriveService, then HttpService
    on_drive = play(instance(drive_first), public_key=keypair[1],
                    metadata=Metadata(config_drive=True))
    assert any("Metadata service loaded: 'ConfigDriveService'" in line
               for line in console(on_drive))
    assert passwords(on_drive) == []
    offline = play(instance(drive_first), public_key=keypair[1],
                   metadata=Metadata(network=False))
    assert any("No available service found" in line for line in console(offline))
    assert passwords(offline) == []
