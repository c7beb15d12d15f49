"""osbuild builds on a real hypervisor: Nova 34's libvirt driver boots QEMU (TCG) guests.

Real Keystone, Glance, Cinder and Nova (its libvirt driver, libvirtd and virtlogd from
Debian); the Windows ISO is the stand-in of :mod:`tests.support.standin_windows`, a Linux
guest that plays Windows Setup on the serial port. What Nova writes into each builder's
domain (boot order, cdrom bus, firmware) is read back from libvirt and checked; afterwards
nothing is left: no domain, server, volume or image but the published one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuild.cli import main
from osbuild.resources import examples_dir
from osbuild_sim.media import cloudbase_msi_standin
from tests.support.cliprocess import read_rest, read_until
from tests.support.libvirtd import Libvirt
from tests.support.realservices import ProjectUser
from tests.support.realstack import REAL_CLOUD, RealStack

# osbuild's clock runs this much faster than real time: its polls (5 s) become 0.5 s while
# the stage timeouts (boot 20 min, winpe 1 h...) stay minutes, longer than a TCG boot.
TIME_SCALE = "10"
# Windows' minimum RAM (preflight checks it); QEMU only backs what the small guest touches.
BUILDER_FLAVOR = ("hv.builder", 1, 4096, 0)  # name, vcpus, MiB, root GB (volume target)
VERIFY_FLAVOR = ("hv.verify", 1, 4096, 40)  # a local root disk as large as the image's
TARGET_GB = VERIFY_FLAVOR[3]
UEFI_EXAMPLE = "ws2025-datacenter-uefi.yaml"
UEFI_SOURCE_ISO = "windows-server-2025-x64.iso"  # seeded with the 2025 stand-in (conftest)
UEFI_PREPARED_ISO = "ws2025-standin-noprompt.iso"
FIRMWARE_LINE = "standin: firmware "
# From `osbuild build` to the guest's first marker: volumes, then a TCG boot (the tests'
# timeout is 600 s).
INSTALL_START_TIMEOUT = 400.0


@pytest.fixture(scope="module")
def builder(hv_stack: RealStack) -> ProjectUser:
    conn = hv_stack.rs.connect()
    existing = {f.name for f in conn.compute.flavors()}
    for name, vcpus, ram, disk in (BUILDER_FLAVOR, VERIFY_FLAVOR):
        if name not in existing:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk,
                                       is_public=True)
    return hv_stack.rs.create_project_user("hypervisor-builds", "hv-builder")


@pytest.fixture
def clouds_yaml(hv_stack: RealStack, builder: ProjectUser, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    path = hv_stack.write_clouds_yaml(tmp_path / "clouds.yaml", builder)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return path


def hypervisor_spec(workdir: Path, example: str, **changes: dict[str, Any]) -> Path:
    """The example with this tier's one-vCPU flavors and ``changes``."""
    data = yaml.safe_load((examples_dir() / example).read_text())
    data["builder"]["flavor"] = BUILDER_FLAVOR[0]
    data["builder"]["disk_gb"] = TARGET_GB
    data.setdefault("verify", {})["flavor"] = VERIFY_FLAVOR[0]
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = workdir / example
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (workdir / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
    return path


def run_build(workdir: Path, capsys: Any, spec: Path) -> tuple[int, list[dict[str, Any]], str]:
    capsys.readouterr()
    code = main(["build", str(spec), "--os-cloud", REAL_CLOUD, "--time-scale", TIME_SCALE,
                 "--log-dir", str(workdir / "logs"), "--json"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, events, err


def builder_domains(stack: RealStack, artifacts: Path, build_id: str) -> list[ET.Element]:
    """The live XML of this build's builder domains, copied to the test artifacts."""
    assert stack.nova is not None
    found = sorted(stack.nova.domain_xml_dir.glob(f"*{build_id}*builder*.xml"))
    for path in found:
        shutil.copy(path, artifacts / path.name)
    return [ET.parse(path).getroot() for path in found]


def devices(domain: ET.Element, kind: str) -> list[tuple[str, str]]:
    """(bus, backing file) of the domain's ``disk`` or ``cdrom`` devices, in XML order."""
    found = []
    for disk in domain.findall("./devices/disk"):
        if disk.get("device") == kind:
            source, target = disk.find("source"), disk.find("target")
            assert source is not None and target is not None
            found.append((target.get("bus", ""), source.get("file", "")))
    return found


def boot_first(domain: ET.Element) -> tuple[str, str]:
    """(device, bus) of the domain's first boot device (per-device ``<boot order>`` or the
    first device of ``<os><boot dev>``'s first type)."""
    ordered = [(int(b.get("order", "0")), d) for d in domain.findall("./devices/disk")
               for b in d.findall("boot")]
    if ordered:
        disk = min(ordered, key=lambda x: x[0])[1]
    else:
        kind = {"hd": "disk", "cdrom": "cdrom"}[domain.findall("./os/boot")[0].get("dev", "")]
        disk = next(d for d in domain.findall("./devices/disk") if d.get("device") == kind)
    source, target = disk.find("source"), disk.find("target")
    assert source is not None and target is not None
    return source.get("file", ""), target.get("bus", "")


def volume_ids(events: list[dict[str, Any]]) -> dict[str, str]:
    """The build's volumes by role (``iso``, ``virtio``, ``config``, ``target``)."""
    return {e["name"].rsplit("-", 1)[-1]: e["id"] for e in events
            if e["event"] == "resource.created" and e["kind"] == "volume"}


@contextlib.contextmanager
def installing_build(spec: Path, clouds_yaml: Path,
                     workdir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``osbuild build`` in a subprocess, handed over (with the builder server's id) once
    the guest installs (its first marker, winpe); killed if it still runs afterwards. The
    rest of its output is :func:`read_rest`'s to read (``communicate()`` would lose what
    the event reader has already buffered)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "osbuild", "build", str(spec), "--os-cloud", REAL_CLOUD,
         "--time-scale", TIME_SCALE, "--log-dir", str(workdir / "logs"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)})
    try:
        events = read_until(proc, lambda e: e["event"] == "stage" and e.get("stage") == "winpe",
                            timeout=INSTALL_START_TIMEOUT)
        [server_id] = [e["id"] for e in events
                       if e["event"] == "resource.created" and e.get("kind") == "server"]
        yield proc, server_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(900)
def test_bios_build_on_qemu_publishes_an_image_that_boots(
    hv_stack: RealStack, libvirt: Libvirt, builder: ProjectUser, clouds_yaml: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str], artifacts: Path,
) -> None:
    before = hv_stack.resource_ids()
    spec = hypervisor_spec(tmp_path, "ws2022-standard.yaml")
    began = time.monotonic()
    code, events, err = run_build(tmp_path, capsys, spec)
    took = time.monotonic() - began
    console = tmp_path / "logs"
    assert code == 0, (err[-3000:], [e for e in events if e["event"].endswith("failed")],
                       sorted(str(p) for p in console.rglob("*")))
    done = [e for e in events if e["event"] == "build.succeeded"][-1]
    build_id = done["build_id"]
    print(f"BIOS build on QEMU: {took:.0f} s")

    # The stand-in's markers came over Nova's serial console, in Windows' order, across a
    # reboot inside the guest (winpe on the ISO, the rest from the installed disk); it
    # powered off 1 s after its final marker (sysprep:ok), and Nova's pty console answers
    # 404 from power-off on: sysprep:start, held for the declared time, decided.
    stages = [e["stage"] for e in events if e["event"] == "stage" and e["status"] == "start"]
    assert stages[:3] == ["winpe", "specialize", "firstlogon"], stages
    assert stages[-1] == "sysprep"
    # The stage still ends in an event, whichever way its end was known (the marker, the
    # guest's os-server-password ack, or the power-off after sysprep:start).
    final = [e for e in events if e["event"] == "stage"][-1]
    assert (final["stage"], final["status"]) == ("sysprep", "ok"), final

    [domain] = builder_domains(hv_stack, artifacts, build_id)
    assert domain.get("type") == "qemu"
    assert domain.findtext("./os/type") is not None
    assert domain.find("./os/loader") is None, "BIOS asked for, firmware loader found"
    assert domain.find("./os").get("firmware") is None  # type: ignore[union-attr]
    # Nova's libvirt driver turns the boot indexes into a BIOS boot order by device type
    # (hard disk, then cdrom) and puts the boot_index 0 disk and the boot_index 1 cdrom
    # first of their kind; SeaBIOS tries each type's first device.
    assert [b.get("dev") for b in domain.findall("./os/boot")] == ["hd", "cdrom"]
    volumes = volume_ids(events)
    disks, cdroms = devices(domain, "disk"), devices(domain, "cdrom")
    assert len(disks) == 1 and disks[0][0] == "virtio"
    assert disks[0][1].endswith(volumes["target"])
    assert cdroms[0][1].endswith(volumes["iso"])
    assert sorted(Path(f).name for _, f in cdroms) == sorted(
        f"volume-{volumes[role]}" for role in ("iso", "virtio", "config"))
    assert {bus for bus, _ in cdroms} == {"sata"}  # the bus osbuild asks for (hw_cdrom_bus)

    # Published, verified by booting the image (the deployed stand-in printed
    # cloudbase-init's lines), and nothing else left: no domain, server, volume, image.
    conn = hv_stack.connect(builder)
    image = conn.image.get_image(done["image_id"])
    assert image.status == "active"
    verify_console = (tmp_path / "logs").rglob("verify-console.log")
    assert any("Plugins execution done" in p.read_text() for p in verify_console)
    assert libvirt.domains() == []
    assert hv_stack.leftovers(keep_images={image.id}, baseline=before) == []


@pytest.mark.timeout(600)
def test_guest_failure_marker_on_qemu_fails_the_build_and_leaves_nothing(
    hv_stack: RealStack, libvirt: Libvirt, builder: ProjectUser, clouds_yaml: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    before = hv_stack.resource_ids()
    # The stand-in fails the `scripts` stage the way the first-logon driver reports a user
    # script that exits non-zero: a fail marker with the script's name and the reason.
    (tmp_path / "break-it.ps1").write_text("# standin-fail: exit code 3\nexit 3\n")
    spec = hypervisor_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    data = yaml.safe_load(spec.read_text())
    data["scripts"] = ["break-it.ps1"]
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    code, events, err = run_build(tmp_path, capsys, spec)
    assert code == 1, (err[-3000:], events[-3:])
    failed = [e for e in events if e["event"] == "build.failed"][-1]
    why = json.dumps(failed)
    # The reason only the guest's fail marker carries, and the stage it named.
    assert "scripts" in why and "break-it.ps1: exit code 3" in why, why
    assert libvirt.domains() == []
    assert hv_stack.leftovers(baseline=before) == []


@pytest.mark.timeout(600)
def test_sigint_mid_install_on_qemu_exits_130_and_leaves_nothing(
    hv_stack: RealStack, libvirt: Libvirt, builder: ProjectUser, clouds_yaml: Path,
    tmp_path: Path,
) -> None:
    before = hv_stack.resource_ids()
    spec = hypervisor_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    with installing_build(spec, clouds_yaml, tmp_path) as (proc, _):
        assert libvirt.domains(), "no domain runs while the guest installs"
        proc.send_signal(signal.SIGINT)
        out, err = read_rest(proc, timeout=300)
    assert proc.returncode == 130, err[-3000:]
    failed = [json.loads(x) for x in out.splitlines() if '"build.failed"' in x]
    assert failed and "SIGINT" in json.dumps(failed[-1])
    assert libvirt.domains() == []
    assert hv_stack.leftovers(baseline=before) == []


@pytest.fixture(scope="module")
def prepared_uefi_iso(hv_stack: RealStack, builder: ProjectUser,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The 2025 stand-in ISO made prompt-less in Glance by ``osbuild media prepare-uefi``."""
    work = tmp_path_factory.mktemp("prepare-uefi")
    clouds = hv_stack.write_clouds_yaml(work / "clouds.yaml", builder)
    done = subprocess.run(
        [sys.executable, "-m", "osbuild", "media", "prepare-uefi", "--image", UEFI_SOURCE_ISO,
         "--name", UEFI_PREPARED_ISO, "--work-dir", str(work), "--os-cloud", REAL_CLOUD],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)})
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    conn = hv_stack.connect(builder)
    image = conn.image.find_image(UEFI_PREPARED_ISO)
    assert image is not None and image.status == "active"
    yield UEFI_PREPARED_ISO
    conn.image.delete_image(image, ignore_missing=True)


def firmware_lines(path: Path) -> list[str]:
    """The stand-in's firmware lines (what is left of GRUB's colour escapes in the console
    transcript may precede one on its line)."""
    lines = path.read_text(errors="replace").splitlines()
    return [line[line.index(FIRMWARE_LINE):].strip() for line in lines if FIRMWARE_LINE in line]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("secure_boot", [False, True], ids=["uefi", "uefi-secure-boot"])
def test_uefi_build_on_qemu_publishes_an_image_that_boots(
    hv_stack: RealStack, libvirt: Libvirt, builder: ProjectUser, clouds_yaml: Path,
    prepared_uefi_iso: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    artifacts: Path, secure_boot: bool,
) -> None:
    before = hv_stack.resource_ids()
    spec = hypervisor_spec(tmp_path, UEFI_EXAMPLE, windows={
        "iso_image": prepared_uefi_iso, "secure_boot": secure_boot})
    bus = yaml.safe_load(spec.read_text())["builder"]["disk_bus"]
    began = time.monotonic()
    code, events, err = run_build(tmp_path, capsys, spec)
    took = time.monotonic() - began
    assert code == 0, (err[-3000:], [e for e in events if e["event"].endswith("failed")])
    done = [e for e in events if e["event"] == "build.succeeded"][-1]
    print(f"UEFI (secure boot {secure_boot}) build on QEMU: {took:.0f} s")

    # What Nova made of osbuild's hardware properties: q35, EFI firmware (Secure Boot's
    # with SMM when asked for), the target volume first to boot on the example's bus, the
    # cdroms on sata.
    [domain] = builder_domains(hv_stack, artifacts, done["build_id"])
    os_el = domain.find("./os")
    assert os_el is not None
    assert (os_el.findtext("type") or "") == "hvm"
    assert os_el.find("type").get("machine", "").startswith("pc-q35")  # type: ignore[union-attr]
    loader = os_el.find("loader")
    assert loader is not None and loader.get("type") == "pflash", ET.tostring(os_el)
    assert os_el.get("firmware") == "efi" or "OVMF" in (loader.text or "")
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("./firmware/feature")}
    smm = domain.find("./features/smm")
    if secure_boot:
        assert features.get("secure-boot") == "yes", features
        assert loader.get("secure") == "yes", ET.tostring(os_el)
        assert smm is not None and smm.get("state", "on") == "on"
    else:
        assert features.get("secure-boot") != "yes", features
        assert loader.get("secure") != "yes", ET.tostring(os_el)
    volumes = volume_ids(events)
    first_file, first_bus = boot_first(domain)
    assert first_file.endswith(volumes["target"]) and first_bus == bus
    disks, cdroms = devices(domain, "disk"), devices(domain, "cdrom")
    assert [b for b, _ in disks] == [bus]
    assert {b for b, _ in cdroms} == {"sata"}  # the bus osbuild asks for (hw_cdrom_bus)
    if bus == "scsi":
        models = {c.get("model") for c in domain.findall("./devices/controller[@type='scsi']")}
        assert models == {"virtio-scsi"}, models

    # The guest booted under the firmware asked for, Setup from the prepared ISO and the
    # installed GPT disk; so did the published image under verify (from the image's
    # properties alone): the stand-in reads the SecureBoot variable from efivarfs.
    expected = f"standin: firmware UEFI, SecureBoot={int(secure_boot)}"
    logs = tmp_path / "logs"
    [builder_log] = [p for p in logs.rglob("console.log")]
    assert firmware_lines(builder_log) == [expected] * 2, builder_log.read_text()[-3000:]
    [verify_log] = list(logs.rglob("verify-console.log"))
    assert firmware_lines(verify_log)[-1:] == [expected], verify_log.read_text()[-3000:]
    assert "Plugins execution done" in verify_log.read_text()

    conn = hv_stack.connect(builder)
    image = conn.image.get_image(done["image_id"])
    assert image.status == "active"
    raw = dict(conn.image.get(f"/images/{image.id}").json())
    assert raw["hw_firmware_type"] == "uefi"
    assert raw.get("os_secure_boot") == ("required" if secure_boot else None)
    assert libvirt.domains() == []
    assert hv_stack.leftovers(keep_images={image.id}, baseline=before) == []


@pytest.mark.timeout(600)
def test_markers_lost_to_the_power_off_404_fail_the_build_on_qemu(
    hv_stack: RealStack, libvirt: Libvirt, builder: ProjectUser, clouds_yaml: Path,
    tmp_path: Path,
) -> None:
    """The power-off protocol matters (osbuild/markers.py): when no poll reads
    ``sysprep:start`` while the guest holds, the console is gone by the next one.

    Every build above is the protocol at its worst timing: the stand-in holds the declared
    time after ``sysprep:start``, writes ``sysprep:ok`` and powers off 1 s later, and
    succeeds. Here the orchestrator's half is broken on purpose and deterministically: the
    osbuild process is frozen (SIGSTOP) from the guest's first marker until Nova reports the
    builder SHUTOFF. A guest without the hold fails the same way only when its power-off
    falls between two polls (0.5 s apart here): a race, so it is not the test.
    """
    before = hv_stack.resource_ids()
    spec = hypervisor_spec(tmp_path, "ws2022-standard.yaml", verify={"enabled": False})
    admin = hv_stack.rs.connect()
    with installing_build(spec, clouds_yaml, tmp_path) as (proc, server_id):
        proc.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 300
            while admin.compute.get_server(server_id).status != "SHUTOFF":
                assert time.monotonic() < deadline, "the builder did not power off"
                time.sleep(2)
        finally:
            proc.send_signal(signal.SIGCONT)
        out, err = read_rest(proc, timeout=300)
    assert proc.returncode == 1, err[-3000:]
    failed = [json.loads(x) for x in out.splitlines() if '"build.failed"' in x]
    why = json.dumps(failed[-1]) if failed else err
    # The last look after SHUTOFF found no console: real Nova with libvirt's pty console
    # answers 404 from power-off on (what the protocol is for).
    assert "the builder powered off before sysprep (last stage: winpe)" in why, why
    assert "console was gone after power-off" in why, why
    assert libvirt.domains() == []
    assert hv_stack.leftovers(baseline=before) == []
