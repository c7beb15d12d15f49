"""The simulated Windows guest: everything a machine does from power-on, driven by its disks.

:func:`boot` looks at what the machine has attached, the way firmware and Windows would:
the boot disk (an installed-Windows record makes it a deployed instance), the Windows
installer ISO (editions and build from ``sources/install.wim``, the El Torito entry its
firmware boots), the virtio-win ISO (driver folders for WinPE, guest tools) and osbuild's
config ISO (answer file, nonce, plan). It yields what happens, lazily, with simulated
timestamps: console lines, disk writes, the posted password and the power-off.

Failures are the ones Windows has, and most of them are silent: Setup waiting on a screen
nobody sees writes nothing to the serial port. Progress markers come only from what the
guest is given (the answer file's cmd lines, the first-logon driver's stages in the plan's
order), rendered with :mod:`osbuild.markers` and the nonce read from the config ISO.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import secrets
import string
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

from osbuild import markers
from osbuild.errors import InvalidInput
from osbuild.markers import Marker, Status
from osbuild.media import eltorito, layout, stages, windows
from osbuild_sim import accounts, disk_usage, media, servicing
from osbuild_sim.disk_usage import DiskUsage
from osbuild_sim.hypervisor import AttachedDevice, Machine

# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ConsoleOutput:
    text: str  # one line written to the serial port (no newline)


@dataclass(frozen=True)
class PowerOff:
    pass


@dataclass(frozen=True)
class PostPassword:
    # base64 RSA (PKCS#1 v1.5) ciphertext, like cloudbase-init; or the build driver's
    # sysprep:ok marker line (osbuild/markers.py, rule 5 of the power-off protocol)
    encrypted: str


@dataclass(frozen=True)
class WriteDisk:
    data: bytes  # new contents of the machine's boot disk


@dataclass(frozen=True)
class AwaitConsoleRead:
    """The end of the sysprep hold while ``sysprep:start`` may still be unread: whoever plays
    the guest goes on at once if the console was read since ``since`` (guest seconds, when
    the marker was written), else holds it until a read or ``latest`` (guest seconds)."""

    since: float
    latest: float


@dataclass(frozen=True)
class GuestEvent:
    at: float  # simulated seconds after power-on, non-decreasing
    action: ConsoleOutput | PowerOff | PostPassword | WriteDisk | AwaitConsoleRead


@dataclass(frozen=True)
class GuestScenario:
    setup_hangs: bool = False  # Setup stops silently after WinPE starts
    fail_stage: str | None = None  # a stage writes a fail marker
    fail_message: str = "simulated failure"
    endless_updates: bool = False  # update loop that never ends (ignores max_passes)
    power_off_at_stage: str | None = None  # unexpected power-off when this stage starts
    # the guest powers off right after this stage's ok marker, never starting the next one
    power_off_after_stage: str | None = None
    # how long sysprep.exe runs (None: minutes, as on real Windows); 0 is the worst timing
    # of the power-off protocol: only its hold keeps sysprep:start on the console
    sysprep_seconds: float | None = None
    # from the final marker to the power-off (None: a Windows shutdown, a few seconds)
    shutdown_seconds: float | None = None
    # Windows reports a pending reboot after this stage's script (a driver, an installer or
    # component cleanup asked for one); it clears after `pending_reboot_sticks` restarts.
    pending_reboot_after: str | None = None
    pending_reboot_signal: str = "CBS RebootPending"
    pending_reboot_sticks: int = 1
    # This many Windows Update calls in a row fail (a transient error), then they work.
    update_errors: int = 0
    update_error: str = 'Exception calling "Search" with "1" argument(s): ' \
        '"Exception from HRESULT: 0x8024402C"'
    # Lines (without timestamps) that a failing sysprep writes to setuperr.log.
    sysprep_errors: tuple[str, ...] = ()
    cloudbase_init_never_finishes: bool = False  # deployed instance
    no_password: bool = False  # deployed instance posts no password
    wrong_key_password: bool = False  # password encrypted with another key
    # The Store updated an app for the logged-on user even with its policy set (as when it
    # ran before the policy applied); without the policy a client always gets one.
    store_updates_app: bool = False
    # Before `fail_stage` fails, a script echoes the build account's password and the
    # product key from the answer file, and the answer file's encoded <Value> (as `type
    # Panther\unattend.xml` would); ``{password}`` and ``{product_key}`` in `fail_message`
    # become those values. What it printed is appended to `revealed` (for tests).
    echo_secrets: bool = False
    revealed: list[str] = field(default_factory=list, compare=False, hash=False)


# --------------------------------------------------------------------------- the disk record

DISK_MAGIC = b"OSBUILD-SIM-DISK\x00"
DISK_RECORD_FORMAT = 1


def disk_record_bytes(record: dict[str, Any]) -> bytes:
    return DISK_MAGIC + json.dumps(record, sort_keys=True).encode()


def read_disk_record(data: bytes) -> dict[str, Any] | None:
    """What the simulated guest left on a disk (or a captured image of it), or None."""
    if not data.startswith(DISK_MAGIC):
        return None
    try:
        record = json.loads(data[len(DISK_MAGIC):].rstrip(b"\x00"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------- durations

# Simulated seconds (low, high), as on a real cloud with a 4-vCPU builder.
_FIRMWARE = (1.0, 3.0)
_WINPE_BOOT = (35.0, 60.0)
_WINPE_COMMAND = (0.5, 2.0)
_IMAGE_APPLY = (420.0, 720.0)
_WINDOWS_BOOT = (40.0, 80.0)
_SPECIALIZE = (90.0, 180.0)
_OOBE = (60.0, 120.0)
_FIRSTLOGON = (20.0, 40.0)
_PROMPT_TIMEOUT = (5.0, 6.0)
_STAGE = {
    "virtio": (90.0, 180.0),
    "cloudbaseinit": (60.0, 120.0),
    "cleanup": (30.0, 60.0),
}
_UPDATE_SEARCH = (60.0, 180.0)
# What any pass that finds updates pays whatever the gap: downloads, .NET, Defender, the
# commit at restart. Staging the cumulative update comes on top (servicing.staging_span).
_UPDATE_INSTALL = (180.0, 360.0)
# DISM /StartComponentCleanup: a fixed part plus its work per GiB of superseded components.
_COMPONENT_CLEANUP = (30.0, 60.0)
_COMPONENT_CLEANUP_PER_GIB = (60.0, 150.0)
_SCRIPT = (20.0, 60.0)
_SYSPREP = (180.0, 360.0)
# The power-off protocol (osbuild/markers.py) promises the orchestrator SYSPREP_HOLD seconds to
# read sysprep:start, minutes that a real cloud never takes from it. At the tests' speeds the
# hold is a fraction of a wall second (0.18 s at speed 1000), which a loaded machine's
# scheduler can swallow whole: a build failed "powered off before sysprep" at load average 4.4.
# So while sysprep:start is unread the hold goes on (AwaitConsoleRead) for up to this many real
# seconds; a reader that keeps up sees no difference, and cloud time is not stretched. The
# stretch stops at half the sysprep stage's default timeout, which the watcher counts in the
# cloud's seconds (2 s is 2000 s at speed 1000, past its 1800 s).
SYSPREP_HOLD_WALL_FLOOR = 2.0
_SYSPREP_HOLD_MAX = next(stage.default_timeout for stage in stages.GUEST_STAGES
                         if stage.name == "sysprep") / 2
_SHUTDOWN = (3.0, 10.0)
_CLOUDBASE_STEP = (1.0, 6.0)

_SEABIOS = "SeaBIOS (version 1.16.3-debian-1.16.3-2)"

_NS = {"u": "urn:schemas-microsoft-com:unattend"}
# What the Store updates on a client during a build when nothing stops it, and what sysprep
# then writes to setuperr.log (Microsoft KB 2769827).
STORE_UPDATED_PACKAGE = "Microsoft.WindowsStore_22411.1401.5.0_x64__8wekyb3d8bbwe"
# Windows 11 24H2 (build 26100) turns on device encryption by itself on a clean install.
_DEVICE_ENCRYPTION_BUILD = 26100
_PREVENT_ENCRYPTION_RE = re.compile(r"\\BitLocker /v PreventDeviceEncryption /t REG_DWORD /d 1\b")
_STORE_POLICY_RE = re.compile(r"\\WindowsStore /v AutoDownload /t REG_DWORD /d 2\b")
_CMD_MARKER_RE = re.compile(
    markers.PREFIX
    + r":[^:\s]*:(?P<stage>[a-z][a-z0-9_-]{0,31}):(?P<status>start|ok|fail|info)"
    + r"(?::(?P<detail>[^)>\r\n\"&|]*))?"
)


# A step of the boot that also hands back what the firmware booted / whether Setup finished.
_Booted = tuple[str, AttachedDevice] | None
_BootStep = Generator[GuestEvent, None, _Booted]
_SetupStep = Generator[GuestEvent, None, bool]


class _Halt(Exception):
    """The guest stops producing output (it may still be running, or powered off)."""


# --------------------------------------------------------------------------- reading media


class _Iso:
    """An attached cdrom's files, read with pycdlib from its bytes."""

    def __init__(self, data: bytes) -> None:
        self._fp = io.BytesIO(data)
        self._iso = eltorito.open_iso(self._fp, name="cdrom")
        self.files = eltorito.list_files(self._iso)
        try:
            self._fp.seek(0)
            self.entries = eltorito.read_boot_entries_fp(self._fp, name="cdrom")
        except InvalidInput:
            self.entries = []

    def has(self, path: str) -> bool:
        return eltorito.normalize_path(path) in self.files

    def read(self, path: str) -> bytes | None:
        return eltorito.read_file(self._iso, self.files, path)

    def has_dir(self, path: str) -> bool:
        prefix = eltorito.normalize_path(path) + "/"
        return any(name.startswith(prefix) for name in self.files)

    def files_under(self, path: str) -> list[str]:
        prefix = eltorito.normalize_path(path) + "/"
        return [name for name in self.files if name.startswith(prefix)]

    @property
    def is_installer(self) -> bool:
        return self.has(media.SETUP_EXE) and self.has(media.INSTALL_WIM)


@dataclass
class _Answer:
    """The parts of autounattend.xml that decide whether and how Setup runs."""

    image_key: str | None = None
    image_value: str | None = None
    partitions: list[str] = field(default_factory=list)
    install_partition: int | None = None
    has_disk_config: bool = False
    driver_paths: list[str] = field(default_factory=list)
    winpe_commands: list[str] = field(default_factory=list)
    specialize_commands: list[str] = field(default_factory=list)
    firstlogon_commands: list[str] = field(default_factory=list)
    autologon: bool = False
    autologon_user: str = ""
    administrator_password: bool = False  # UserAccounts/AdministratorPassword is set
    autologon_password_value: str = ""  # as the answer file carries it
    autologon_password: str = ""  # as Windows decodes it
    product_key: str = ""


def _component(root: Any, pass_name: str, name: str) -> Any:
    for settings in root.findall("u:settings", _NS):
        if settings.get("pass") != pass_name:
            continue
        for component in settings.findall("u:component", _NS):
            if component.get("name") == name:
                return component
    return None


def _ordered(elements: list[Any], text_tag: str) -> list[str]:
    items = []
    for element in elements:
        order = element.findtext("u:Order", "0", _NS).strip()
        items.append((int(order) if order.isdigit() else 0, element.findtext(text_tag, "", _NS)))
    return [text for _order, text in sorted(items, key=lambda item: item[0])]


def _decoded(value: str) -> str:
    """An answer-file password with ``PlainText`` false: base64 of UTF-16LE value+element
    name (``Password`` under AutoLogon), as Windows reads it."""
    try:
        text = base64.b64decode(value).decode("utf-16-le")
    except (ValueError, UnicodeDecodeError):
        return ""
    return text.removesuffix("Password")


def parse_answer_file(data: bytes) -> _Answer | None:
    """None when the file is not well-formed XML (Setup then stops without a word)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    answer = _Answer()
    setup = _component(root, "windowsPE", "Microsoft-Windows-Setup")
    if setup is not None:
        meta = setup.find("u:ImageInstall/u:OSImage/u:InstallFrom/u:MetaData", _NS)
        if meta is not None:
            answer.image_key = (meta.findtext("u:Key", "", _NS) or "").strip()
            answer.image_value = (meta.findtext("u:Value", "", _NS) or "").strip()
        disk = setup.find("u:DiskConfiguration/u:Disk", _NS)
        if disk is not None:
            answer.has_disk_config = True
            parts = disk.findall("u:CreatePartitions/u:CreatePartition", _NS)
            answer.partitions = [t.strip() for t in _ordered(parts, "u:Type")]
        install_to = setup.findtext("u:ImageInstall/u:OSImage/u:InstallTo/u:PartitionID", "",
                                    _NS).strip()
        answer.install_partition = int(install_to) if install_to.isdigit() else None
        answer.product_key = setup.findtext("u:UserData/u:ProductKey/u:Key", "", _NS).strip()
        answer.winpe_commands = _ordered(
            setup.findall("u:RunSynchronous/u:RunSynchronousCommand", _NS), "u:Path"
        )
    pnp = _component(root, "windowsPE", "Microsoft-Windows-PnpCustomizationsWinPE")
    if pnp is not None:
        answer.driver_paths = [
            (p.text or "").strip()
            for p in pnp.findall("u:DriverPaths/u:PathAndCredentials/u:Path", _NS)
        ]
    deployment = _component(root, "specialize", "Microsoft-Windows-Deployment")
    if deployment is not None:
        answer.specialize_commands = _ordered(
            deployment.findall("u:RunSynchronous/u:RunSynchronousCommand", _NS), "u:Path"
        )
    shell = _component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    if shell is not None:
        enabled = shell.findtext("u:AutoLogon/u:Enabled", "", _NS).strip().lower() == "true"
        count = shell.findtext("u:AutoLogon/u:LogonCount", "0", _NS).strip()
        answer.autologon = enabled and count.isdigit() and int(count) >= 1
        answer.autologon_user = shell.findtext("u:AutoLogon/u:Username", "", _NS).strip()
        value = shell.findtext("u:AutoLogon/u:Password/u:Value", "", _NS).strip()
        plain = shell.findtext("u:AutoLogon/u:Password/u:PlainText", "true", _NS).strip()
        answer.autologon_password_value = value
        answer.autologon_password = value if plain.lower() == "true" else _decoded(value)
        answer.administrator_password = (
            shell.find("u:UserAccounts/u:AdministratorPassword/u:Value", _NS) is not None)
        answer.firstlogon_commands = _ordered(
            shell.findall("u:FirstLogonCommands/u:SynchronousCommand", _NS), "u:CommandLine"
        )
    return answer


def command_markers(command: str) -> list[Marker]:
    """The markers a cmd line from the answer file writes (its nonce is read at run time)."""
    return [
        Marker(m.group("stage"), Status(m.group("status")), (m.group("detail") or "").strip())
        for m in _CMD_MARKER_RE.finditer(command)
    ]


# --------------------------------------------------------------------------- the guest


def boot(machine: Machine, *, public_key: str | None = None,
         scenario: GuestScenario = GuestScenario(),
         rng: random.Random | None = None,
         started_at: datetime | None = None,
         metadata: Metadata | None = None,
         work_pace: float = 1.0,
         unread_hold: float = 0.0) -> Iterator[GuestEvent]:
    """Everything the guest does from power-on, lazily (an endless update loop is an endless
    iterator). A boot disk holding the installed-Windows record -> a deployed instance
    (cloudbase-init log lines, PostPassword if ``public_key``); else the first cdrom in boot
    order being the Windows installer -> the unattended install driven by the config ISO;
    else firmware's "no bootable device" lines and nothing more.

    ``started_at`` is the wall-clock time of power-on (cloudbase-init's log timestamps);
    ``metadata`` how the instance's metadata reaches it (cloudbase-init's UserDataPlugin runs
    ``#ps1_sysnative`` user data: osbuild's refresh starts its driver that way).
    ``work_pace``: how much faster than real the world runs this guest's work (its event
    times are divided by it); the guest's promised waits (the sysprep hold) are stretched by
    it so that they keep their length in the cloud's time. ``unread_hold``: how long (the
    cloud's seconds, from sysprep:start) the hold lasts while nobody has read the console
    since sysprep:start (an :class:`AwaitConsoleRead` event; at most half the sysprep stage's
    default timeout); 0: the plain :data:`osbuild.markers.SYSPREP_HOLD`.
    """
    guest = _Guest(machine, public_key, scenario, rng or random.Random(),
                   started_at or datetime.now(UTC), metadata or Metadata(), work_pace,
                   unread_hold)
    return guest.run()


@dataclass(frozen=True)
class Metadata:
    """The instance's metadata as the guest can reach it: Nova's metadata service over a
    network, and/or a config drive (both carry the user data)."""

    user_data: bytes | None = None
    config_drive: bool = False
    network: bool = True

    def service(self, services: list[str]) -> str | None:
        """The metadata service cloudbase-init loads: the first of its list that answers
        (cloudbaseinit/metadata/factory.py tries them in order)."""
        names = [s.rsplit(".", 1)[-1] for s in services] or ["HttpService"]
        for name in names:
            if name == "ConfigDriveService" and self.config_drive:
                return name
            if name == "HttpService" and self.network:
                return name
        return None


@dataclass
class _Config:
    """osbuild's config ISO as the guest finds it (by the tag file, like the scripts do)."""

    iso: _Iso
    nonce: str | None
    plan: layout.GuestPlan | None


class _Guest:
    def __init__(self, machine: Machine, public_key: str | None, scenario: GuestScenario,
                 rng: random.Random, started_at: datetime, metadata: Metadata,
                 work_pace: float = 1.0, unread_hold: float = 0.0) -> None:
        self.machine = machine
        self.work_pace = work_pace
        self.unread_hold = min(unread_hold, _SYSPREP_HOLD_MAX)
        self.metadata = metadata
        self.public_key = public_key
        self.scenario = scenario
        self.rng = rng
        self.started_at = started_at
        self.t = 0.0
        self.disks: dict[int, bytes] = {i: d.data for i, d in enumerate(machine.devices)}
        self._isos: dict[int, _Iso | None] = {}
        self.config: _Config | None = None
        self.answer = _Answer()
        self.target: AttachedDevice | None = None
        self.record: dict[str, Any] = {}
        self.usage = DiskUsage()
        # Windows' pending-reboot signals and the restarts left until they clear.
        self.pending_reboot: list[str] = []
        self.pending_restarts = 0
        self.settle_reboots = 0  # the driver's restarts for a pending reboot
        self.update_errors_left = scenario.update_errors

    # ---- small helpers

    def _wait(self, span: tuple[float, float]) -> None:
        self.t += self.rng.uniform(*span)

    def _say(self, text: str) -> GuestEvent:
        return GuestEvent(self.t, ConsoleOutput(text))

    def _index(self, device: AttachedDevice) -> int:
        return next(i for i, d in enumerate(self.machine.devices) if d is device)

    def _iso(self, device: AttachedDevice) -> _Iso | None:
        index = self._index(device)
        if index not in self._isos:
            try:
                self._isos[index] = _Iso(self.disks[index])
            except InvalidInput:
                self._isos[index] = None
        return self._isos[index]

    def _cdroms(self) -> list[tuple[str, AttachedDevice, _Iso | None]]:
        """Cdroms with the drive letters Windows gives them (D: onwards, in device order)."""
        out = []
        for letter, device in zip(string.ascii_uppercase[3:], self.machine.cdroms(),
                                  strict=False):
            out.append((letter, device, self._iso(device)))
        return out

    def _marker(self, marker: Marker) -> Iterator[GuestEvent]:
        """Write a marker, applying the scenario's power-off or failure at a stage start."""
        config = self.config
        if config is None or config.nonce is None:
            return  # the cmd/PowerShell code finds no nonce file and writes nothing
        yield self._say(marker.render(config.nonce))
        if marker.status is Status.START:
            if self.scenario.power_off_at_stage == marker.stage:
                self.t += self.rng.uniform(5.0, 30.0)
                yield GuestEvent(self.t, PowerOff())
                raise _Halt
            if self.scenario.fail_stage == marker.stage:
                self.t += self.rng.uniform(10.0, 60.0)
                message = self.scenario.fail_message
                if self.scenario.echo_secrets:
                    yield from self._echo_secrets()
                    message = message.replace("{password}", self.answer.autologon_password) \
                        .replace("{product_key}", self.answer.product_key)
                yield self._say(Marker(marker.stage, Status.FAIL, message).render(config.nonce))
                raise _Halt

    def _echo_secrets(self) -> Iterator[GuestEvent]:
        answer = self.answer
        self.scenario.revealed.extend(
            v for v in (answer.autologon_password, answer.product_key) if v)
        yield self._say(f"net user {answer.autologon_user} {answer.autologon_password}")
        yield self._say(f"slmgr.vbs /ipk {answer.product_key}")
        yield self._say(f"          <Value>{answer.autologon_password_value}</Value>")
        yield self._say(f"cmdkey /pass:{answer.autologon_password}")

    def _stage_marker(self, stage: str, status: Status, detail: str = "") -> Iterator[GuestEvent]:
        return self._marker(Marker(stage, status, detail))

    # ---- firmware

    def _device_path(self, device: AttachedDevice) -> tuple[str, str]:
        n = [d for d in self.machine.devices if d.kind == device.kind].index(device) + 1
        if device.kind == "cdrom":
            name = f"UEFI QEMU DVD-ROM QM0000{n} "
        else:
            name = (
                "UEFI Misc Device" if device.bus == "virtio" else f"UEFI QEMU HARDDISK QM0000{n} "
            )
        path = {
            "sata": f"PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x{n - 1:X},0xFFFF,0x0)",
            "ide": f"PciRoot(0x0)/Pci(0x1,0x1)/Ata(Secondary,Master,0x{n - 1:X})",
            "scsi": f"PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x{n - 1:X},0x0)",
            "virtio": f"PciRoot(0x0)/Pci(0x{3 + n:X},0x0)",
        }.get(device.bus or "", f"PciRoot(0x0)/Pci(0x{8 + n:X},0x0)")
        return name, path

    def _power_on(self) -> Iterator[GuestEvent]:
        self._wait(_FIRMWARE)
        if self.machine.firmware == "bios":
            yield self._say(_SEABIOS)
            yield self._say(f"Machine UUID {_uuid(self.rng)}")

    def _firmware_boot(self) -> _BootStep:
        """Try the boot devices in order; returns ("disk"|"installer", device) or None."""
        uefi = self.machine.firmware == "uefi"
        for number, device in enumerate(self.machine.boot_order(), start=1):
            name, path = self._device_path(device)
            if device.kind == "disk":
                record = read_disk_record(self.disks[self._index(device)])
                bootable = record is not None and record.get("firmware") == self.machine.firmware
                if uefi:
                    if bootable:
                        loader = "HD(1,GPT)/\\EFI\\Microsoft\\Boot\\bootmgfw.efi"
                        yield self._say(f'BdsDxe: loading Boot0003 "Windows Boot Manager" '
                                        f"from {loader}")
                        yield self._say(f'BdsDxe: starting Boot0003 "Windows Boot Manager" '
                                        f"from {loader}")
                        return ("disk", device)
                    yield self._say(f'BdsDxe: failed to load Boot000{number} "{name}" from '
                                    f"{path}: Not Found")
                    continue
                yield self._say("Booting from Hard Disk...")
                if bootable:
                    return ("disk", device)
                yield self._say("Boot failed: not a bootable disk")
                yield self._say("")
                continue

            iso = self._iso(device)
            entries = iso.entries if iso is not None else []
            entry = eltorito.efi_entry(entries) if uefi else eltorito.bios_entry(entries)
            if uefi:
                if entry is None or iso is None or not iso.is_installer:
                    yield self._say(f'BdsDxe: failed to load Boot000{number} "{name}" from '
                                    f"{path}: Not Found")
                    continue
                yield self._say(f'BdsDxe: loading Boot000{number} "{name}" from {path}')
                yield self._say(f'BdsDxe: starting Boot000{number} "{name}" from {path}')
                if entry.path != eltorito.normalize_path(eltorito.EFI_NOPROMPT_IMAGE):
                    # The stock efisys.bin waits for a key nobody presses.
                    yield self._say("Press any key to boot from CD or DVD......")
                    self._wait(_PROMPT_TIMEOUT)
                    return None
                return ("installer", device)
            yield self._say("Booting from DVD/CD...")
            if entry is None or iso is None or not iso.is_installer:
                yield self._say("Boot failed: Could not read from CDROM (code 0004)")
                continue
            if any(read_disk_record(self.disks[self._index(d)]) for d in self.machine.disks()):
                # etfsboot prompts only when the hard disk is bootable, then falls through.
                yield self._say("Press any key to boot from CD or DVD..")
                self._wait(_PROMPT_TIMEOUT)
                continue
            return ("installer", device)
        if uefi:
            yield self._say("BdsDxe: No bootable option or device was found.")
            yield self._say("BdsDxe: Press any key to enter the Boot Manager Menu.")
        else:
            yield self._say("No bootable device.")
        return None

    def _restart(self) -> _BootStep:
        """A reboot inside the guest (the console log keeps going)."""
        if self.pending_reboot:
            self.pending_restarts -= 1
            if self.pending_restarts <= 0:
                self.pending_reboot = []
        self._wait(_FIRMWARE)
        yield from self._power_on()
        target = yield from self._firmware_boot()
        return target

    # ---- entry point

    def run(self) -> Iterator[GuestEvent]:
        try:
            yield from self._power_on()
            target = yield from self._firmware_boot()
            if target is None:
                return
            kind, device = target
            if kind == "disk":
                yield from self._deployed(device)
            else:
                yield from self._install(device)
        except _Halt:
            return

    # ---- Windows Setup

    def _find_config(self) -> None:
        for _letter, _device, iso in self._cdroms():
            if iso is None or not iso.has(layout.TAG_FILE):
                continue
            raw_nonce = iso.read(layout.NONCE_FILE)
            nonce = raw_nonce.decode("ascii", "replace").strip() if raw_nonce else None
            if nonce is not None and not re.fullmatch(r"[0-9a-f]{32}", nonce):
                nonce = None  # the scripts refuse a malformed nonce file
            plan = None
            raw_plan = iso.read(layout.PLAN_FILE)
            if raw_plan is not None:
                try:
                    plan = layout.GuestPlan.from_json(raw_plan)
                except ValueError:
                    plan = None
            self.config = _Config(iso=iso, nonce=nonce, plan=plan)
            return

    def _answer(self) -> _Answer | None:
        # Setup reads autounattend.xml from the root of removable media, first found wins.
        for _letter, _device, iso in self._cdroms():
            if iso is not None and iso.has(layout.ANSWER_FILE):
                data = iso.read(layout.ANSWER_FILE) or b""
                return parse_answer_file(data)
        return None

    def _target_disk(self) -> AttachedDevice | None:
        order = [d for d in self.machine.boot_order() if d.kind == "disk"]
        disks = order or list(self.machine.disks())
        return disks[0] if disks else None

    def _loaded_drivers(self, answer: _Answer) -> set[str]:
        """Drivers WinPE loads: DriverPaths whose folder exists on the cdrom at that letter."""
        letters = {letter: iso for letter, _device, iso in self._cdroms()}
        loaded: set[str] = set()
        for raw in answer.driver_paths:
            match = re.fullmatch(r"([A-Za-z]):\\(.+?)\\?", raw)
            if not match:
                continue
            iso = letters.get(match.group(1).upper())
            folder = match.group(2).replace("\\", "/")
            if iso is None or not any(f.endswith(".inf") for f in iso.files_under(folder)):
                continue
            driver = folder.split("/")[0].casefold()
            loaded.update(d for d in windows.VIRTIO_DRIVERS if d.casefold() == driver)
        return loaded

    def _select_image(self, answer: _Answer, installer: _Iso) -> media.WimImage | None:
        images = media.read_wim_images(installer.read(media.INSTALL_WIM) or b"")
        if not images:
            return None
        key, value = (answer.image_key or "").upper(), answer.image_value or ""
        if key == "/IMAGE/NAME":
            return next((i for i in images if i.name.casefold() == value.casefold()), None)
        if key == "/IMAGE/INDEX":
            return next((i for i in images if str(i.index) == value), None)
        # Without a selection Setup asks which edition to install.
        return images[0] if len(images) == 1 and not key else None

    def _passes_win11_checks(self, image: media.WimImage, answer: _Answer) -> bool:
        # Failing shows "This PC can't run Windows 11" on the screen; nothing on the serial
        # port, like every other Setup stop.
        release = windows.release_of_image(image.name)
        if release is None or not release.hardware_checks:
            return True
        commands = " ".join(answer.winpe_commands)
        bypassed = "LabConfig" in commands
        tpm_ok = self.machine.tpm or (bypassed and "BypassTPMCheck" in commands)
        secure_ok = (self.machine.firmware == "uefi" and self.machine.secure_boot) or (
            bypassed and "BypassSecureBootCheck" in commands
        )
        return tpm_ok and secure_ok

    def _disk_layout_ok(self, answer: _Answer) -> bool:
        if not answer.has_disk_config or not answer.partitions:
            return False  # Setup shows the disk selection page
        gpt = "EFI" in answer.partitions
        if gpt != (self.machine.firmware == "uefi"):
            # An EFI partition on BIOS (MBR) or an MBR layout on UEFI: Setup aborts.
            return False
        index = answer.install_partition
        return index is not None and 1 <= index <= len(answer.partitions) and (
            answer.partitions[index - 1] == "Primary"
        )

    def _install(self, device: AttachedDevice) -> Iterator[GuestEvent]:
        installer_device = device
        self._find_config()
        while True:
            installed = yield from self._winpe(installer_device)
            if not installed:
                return
            target = yield from self._restart()
            if target is None:
                return
            kind, booted = target
            if kind == "disk":
                break
            # The prompt-less installer is still first in the boot order: Setup starts over.
            installer_device = booted
        yield from self._after_setup()

    def _winpe(self, installer_device: AttachedDevice) -> _SetupStep:
        installer = self._iso(installer_device)
        assert installer is not None
        self._wait(_WINPE_BOOT)
        answer = self._answer()
        if answer is None:
            return False  # no or malformed answer file: Setup waits for a user
        self.answer = answer
        for command in answer.winpe_commands:
            self._wait(_WINPE_COMMAND)
            for marker in command_markers(command):
                yield from self._marker(marker)
        if self.scenario.setup_hangs:
            return False
        image = self._select_image(answer, installer)
        if image is None or not self._passes_win11_checks(image, answer):
            return False
        target = self._target_disk()
        if target is None:
            return False
        loaded = self._loaded_drivers(answer)
        needed = windows.STORAGE_DRIVER_FOR_BUS.get(target.bus or "")
        if needed is not None and needed not in loaded:
            return False  # "We couldn't find any drives"
        if not self._disk_layout_ok(answer):
            return False
        self._wait(_IMAGE_APPLY)
        plan = self.config.plan if self.config else None
        self.target = target
        self.record = {
            "format": DISK_RECORD_FORMAT,
            "os": "windows",
            "image_name": image.name,
            "language": image.languages[0] if image.languages else "en-US",
            "edition_id": image.edition_id,
            "build": image.build,
            "firmware": self.machine.firmware,
            "machine_type": self.machine.machine_type,
            "disk_bus": target.bus,
            "drivers": sorted(loaded),
            "virtio_guest_tools": False,
            "qemu_ga": False,
            "cloudbase_init": False,
            "cloudbase_init_metadata_services": [],
            "update_passes": 0,
            # The patch level Windows Update starts from: the media's.
            "updated_at": servicing.media_serviced(image.build or 0).isoformat(timespec="seconds"),
            "scripts": [],
            # Setup gives the built-in Administrator the answer file's password; autologon
            # as `Administrator` (its language-neutral name) enables it.
            "builtin_administrator": {
                "enabled": answer.autologon_user.casefold() == "administrator",
                "password": "build" if answer.administrator_password else "none",
            },
            "sysprep": False,
            "generalize_count": 0,
            "build_id": plan.build_id if plan else None,
            "stage": "setup",
        }
        kind = "client" if _is_client(image.name) else "server"
        self.usage.write("windows", disk_usage.INSTALLED[kind])
        self.usage.write("superseded", disk_usage.SUPERSEDED_AT_INSTALL)
        yield from self._write_disk()
        return True

    def _write_disk(self) -> Iterator[GuestEvent]:
        assert self.target is not None
        self.record["disk"] = self.usage.to_record()
        data = disk_record_bytes(self.record)
        self.disks[self._index(self.target)] = data
        yield GuestEvent(self.t, WriteDisk(data))

    def _after_setup(self) -> Iterator[GuestEvent]:
        answer = self.answer
        self._wait(_WINDOWS_BOOT)
        specialize_span = self.rng.uniform(*_SPECIALIZE)
        step = specialize_span / (len(answer.specialize_commands) + 1)
        for command in answer.specialize_commands:
            self.t += step
            for marker in command_markers(command):
                yield from self._marker(marker)
        self.t += step
        target = yield from self._restart()  # Setup reboots into OOBE
        if target is None:
            return
        if target[0] != "disk":
            yield from self._install(target[1])
            return
        self._wait(_WINDOWS_BOOT)
        # The first boot of the installed system makes pagefile.sys, and hiberfil.sys where
        # hibernation is on (clients).
        kind = "client" if _is_client(self.record["image_name"]) else "server"
        self.usage.write("pagefile", disk_usage.PAGEFILE)
        self.usage.write("hiberfile", disk_usage.HIBERFILE[kind])
        # Windows 11 24H2 turns on device encryption during OOBE of a clean install with a
        # TPM, unless PreventDeviceEncryption was set before.
        prevented = any(_PREVENT_ENCRYPTION_RE.search(c) for c in answer.specialize_commands)
        encrypts = (kind == "client" and self.machine.tpm and not prevented
                    and int(self.record.get("build") or 0) >= _DEVICE_ENCRYPTION_BUILD)
        self.record["device_encryption"] = "EncryptionInProgress" if encrypts else (
            "FullyDecrypted")
        self._wait(_OOBE)
        runs_driver = any(
            layout.FIRSTLOGON_SCRIPT.rsplit("/", 1)[-1] in command
            for command in answer.firstlogon_commands
        )
        config = self.config
        if not (answer.autologon and runs_driver and config is not None):
            return  # the logon screen waits for someone
        if not config.iso.has(layout.FIRSTLOGON_SCRIPT) or config.plan is None:
            return  # the command finds nothing to run
        if config.nonce is None:
            return
        self._wait(_FIRSTLOGON)
        client = _is_client(self.record["image_name"])
        store_policy = any(_STORE_POLICY_RE.search(c) for c in answer.specialize_commands)
        if client and (self.scenario.store_updates_app or not store_policy):
            # The Store updates its apps for the user who logged on, not for all users.
            self.record["appx_user_updated"] = [STORE_UPDATED_PACKAGE]
        yield from self._firstlogon(config.plan)

    # ---- the first-logon driver (templates/scripts/firstlogon.ps1)

    def _firstlogon(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        yield from self._stage_marker("firstlogon", Status.START, plan.build_id)
        self.t += self.rng.uniform(2.0, 5.0)
        yield from self._stage_marker("firstlogon", Status.OK)
        config = self.config
        assert config is not None
        for stage in plan.stages:
            yield from self._stage_marker(stage, Status.START)
            declared = stages.by_name(stage)
            if declared is None or not config.iso.has(stages.script_file(stage)):
                # The driver knows no script for it, or the script is not on the ISO.
                self.t += 1.0
                yield from self._stage_marker(
                    stage, Status.FAIL, f"{stages.script_name(stage)} is not recognized"
                )
                raise _Halt
            if declared.settle_reboots:
                yield from self._settle(stage, plan)
            # A stage this guest has no model for runs for a while and succeeds.
            handler = getattr(self, f"_stage_{stage}", self._stage_generic)
            try:
                yield from handler(plan)
            except _StageFailed as failure:
                yield from self._stage_marker(stage, Status.FAIL, str(failure))
                raise _Halt from None
            if stage == "sysprep":
                return
            if self.scenario.pending_reboot_after == stage:
                self.pending_reboot = [self.scenario.pending_reboot_signal]
                self.pending_restarts = self.scenario.pending_reboot_sticks
            self.record["stage"] = stage
            yield from self._stage_marker(stage, Status.OK)
            if self.scenario.power_off_after_stage == stage:
                yield self._shut_down()
                raise _Halt

    def _settle(self, stage: str, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        """The driver restarts Windows while it reports a pending reboot, bounded."""
        while self.pending_reboot:
            signals = ", ".join(self.pending_reboot)
            cap = plan.settle_reboots
            if self.settle_reboots >= cap:
                yield from self._stage_marker(
                    stage, Status.FAIL,
                    f"a reboot is still pending after {self.settle_reboots} reboots: {signals}")
                raise _Halt
            self.settle_reboots += 1
            self.record["settle_reboots"] = self.settle_reboots
            yield from self._stage_marker(
                stage, Status.INFO,
                f"reboot pending ({signals}): restarting {self.settle_reboots}/{cap}")
            yield from self._reboot_and_resume(stage)

    def _stage_generic(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        self._wait(_SCRIPT)
        return
        yield

    def _reboot_and_resume(self, stage: str) -> Iterator[GuestEvent]:
        target = yield from self._restart()
        if target is None:
            raise _Halt
        if target[0] != "disk":
            yield from self._install(target[1])
            raise _Halt
        self._wait(_WINDOWS_BOOT)
        yield from self._stage_marker(stage, Status.INFO, "resumed after reboot")

    def _find_on_cdroms(self, path: str) -> _Iso | None:
        for _letter, _device, iso in self._cdroms():
            if iso is not None and iso.has(path):
                return iso
        return None

    def _stage_virtio(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        self._wait(_STAGE["virtio"])
        virtio = self._find_on_cdroms(windows.VIRTIO_GUEST_TOOLS)
        if virtio is None:
            raise _StageFailed(f"no drive holds {windows.VIRTIO_GUEST_TOOLS}")
        folder = plan.virtio.os_folder
        if plan.virtio.guest_tools:
            self._wait((30.0, 90.0))
            self.record["virtio_guest_tools"] = True
            # The guest tools install every driver on the ISO for this Windows version.
            self.record["drivers"] = sorted(
                set(self.record["drivers"])
                | {d for d in windows.VIRTIO_DRIVERS if virtio.has_dir(f"{d}/{folder}")}
            )
            yield from self._stage_marker("virtio", Status.INFO, "guest tools installed")
        if plan.virtio.qemu_ga:
            if not virtio.has(windows.VIRTIO_QEMU_GA_MSI):
                raise _StageFailed("msiexec.exe exited with code 1619")
            self._wait((10.0, 30.0))
            self.record["qemu_ga"] = True
            yield from self._stage_marker("virtio", Status.INFO, "qemu guest agent installed")

    def _stage_cloudbaseinit(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        config = self.config
        assert config is not None
        source = plan.cloudbase_init
        if source.path:
            msi = config.iso.read(source.path)
            if msi is None:
                raise _StageFailed(f"Cannot find path '{source.path}' because it does not exist.")
            actual = hashlib.sha256(msi).hexdigest()
            if actual != source.sha256:
                raise _StageFailed(
                    f"cloudbase-init MSI sha256 is {actual}, expected {source.sha256}"
                )
        else:
            yield from self._stage_marker("cloudbaseinit", Status.INFO, "downloading the MSI")
            self._wait((20.0, 60.0))
        self._wait(_STAGE["cloudbaseinit"])
        for conf in (layout.CLOUDBASE_CONF, layout.CLOUDBASE_UNATTEND_CONF):
            if not config.iso.has(conf):
                raise _StageFailed(f"Could not find file '{conf}'.")
        self.record["cloudbase_init"] = True
        self.usage.write("software", disk_usage.DRIVERS_AND_AGENTS)
        self.record["cloudbase_init_username"] = _conf_value(
            config.iso.read(layout.CLOUDBASE_CONF) or b"", "username")
        # stage-cloudbaseinit.ps1 names the built-in groups as this Windows does (by SID).
        language = self.record["language"]
        self.record["cloudbase_init_groups"] = [
            (accounts.local_name(language, group) or group) if group.startswith("S-1-")
            else group
            for group in (plan.cloudbase_init.groups or _conf_list(
                config.iso.read(layout.CLOUDBASE_CONF) or b"", "groups"))
        ]
        self.record["cloudbase_init_metadata_services"] = _metadata_services(
            config.iso.read(layout.CLOUDBASE_CONF) or b""
        )

    def _update_call(self, what: str, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        """One Windows Update call, retried with back-off as stage-updates.ps1 does."""
        attempts, delay = plan.updates.attempts, plan.updates.retry_delay
        attempt = 1
        while self.update_errors_left > 0:
            self.update_errors_left -= 1
            self._wait((5.0, 30.0))
            reason = self.scenario.update_error
            if attempt >= attempts:
                raise _StageFailed(f"{what} failed {attempt} times: {reason}")
            yield from self._stage_marker(
                "updates", Status.INFO,
                f"{what} failed ({reason}): retry {attempt + 1}/{attempts} in {delay}s")
            self.t += delay
            delay *= 2
            attempt += 1

    def _stage_updates(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        cap = plan.updates.max_passes
        rounds_with_updates = self.rng.randint(1, 3)
        if plan.kind == "refresh":
            rounds_with_updates = self._rounds_since(self.record.get("updated_at"))
        # The first pass that finds updates stages the cumulative update: its work and what
        # it writes grow with how far behind the installed patch level is.
        months = self._months_behind()
        share = servicing.differing_share(months)
        while True:
            done = self.record["update_passes"]
            if done >= cap and not self.scenario.endless_updates:
                yield from self._stage_marker(
                    "updates", Status.INFO, f"stopped at the cap of {cap} passes"
                )
                break
            this_pass = done + 1
            self._wait(_UPDATE_SEARCH)
            yield from self._update_call("Windows Update search", plan)
            if this_pass > rounds_with_updates and not self.scenario.endless_updates:
                if self.pending_reboot and this_pass < cap:
                    # As stage-updates.ps1: restart and search again, as a pass.
                    self.record["update_passes"] = this_pass
                    signals = ", ".join(self.pending_reboot)
                    yield from self._stage_marker(
                        "updates", Status.INFO,
                        f"pass {this_pass}/{cap}: no updates offered, reboot pending "
                        f"({signals}): restarting to search again")
                    yield from self._update_restart(plan)
                    continue
                yield from self._stage_marker(
                    "updates", Status.INFO, f"pass {this_pass}/{cap}: no updates left"
                )
                break
            self._wait(_UPDATE_INSTALL)
            if this_pass == 1:
                self._wait(servicing.staging_span(months))
            for what, (first, later) in disk_usage.UPDATE_PASS.items():
                self.usage.write(what, later + round((first - later) * share)
                                 if this_pass == 1 else later)
            self.usage.delete("scratch")
            count = self.rng.randint(2, 14) if this_pass == 1 else self.rng.randint(1, 4)
            self.record["update_passes"] = this_pass
            yield from self._stage_marker(
                "updates", Status.INFO, f"pass {this_pass}/{cap}: {count} updates, result code 2"
            )
            yield from self._update_restart(plan)
        self.record["updated_at"] = self._wall().isoformat(timespec="seconds")

    def _update_restart(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        """stage-updates.ps1's Request-OsbuildUpdateRestart: a refresh turns the page file off
        before its first update restart, and the boot after it deletes pagefile.sys."""
        if (plan.kind == "refresh" and plan.hygiene.pagefile
                and not self.record.get("pagefile_off")
                and _calls(self._stage_script("updates"), "Disable-OsbuildPagefile")):
            self.record["pagefile_off"] = True
            yield from self._stage_marker(
                "updates", Status.INFO,
                "page file off: this restart removes pagefile.sys for the image")
        yield from self._reboot_and_resume("updates")
        if self.record.get("pagefile_off"):
            self.usage.delete("pagefile")

    def _months_behind(self) -> float:
        """Months between the installed patch level and now (at least one)."""
        try:
            patched = datetime.fromisoformat(str(self.record.get("updated_at")))
        except ValueError:
            patched = servicing.media_serviced(int(self.record.get("build") or 0))
        return servicing.months_behind(patched, self._wall())

    def _rounds_since(self, updated_at: Any) -> int:
        """Update passes that find something on an installed image: Windows' monthly
        cumulative update supersedes the earlier ones, so one pass (and its reboot) brings a
        month's patches; a servicing stack update first makes it two after a longer gap."""
        try:
            then = datetime.fromisoformat(str(updated_at))
        except ValueError:
            return 2
        return 1 if (self._wall() - then) <= timedelta(days=40) else 2

    def _wall(self) -> datetime:
        return self.started_at + timedelta(seconds=self.t)

    def _stage_scripts(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        config = self.config
        assert config is not None
        for relative in plan.scripts:
            name = relative.rsplit("/", 1)[-1]
            yield from self._stage_marker("scripts", Status.INFO, f"running {name}")
            self._wait(_SCRIPT)
            if not config.iso.has(relative):
                # powershell.exe -File on a missing file exits with this code.
                raise _StageFailed(f"{name} exited with code -196608")
            self.record["scripts"] = [*self.record["scripts"], name]

    def _stage_cleanup(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        self._wait(_STAGE["cleanup"])
        script = self._stage_script("cleanup")
        hygiene = plan.hygiene
        if _calls(script, "Invoke-OsbuildHygiene"):
            if hygiene.component_cleanup:
                # DISM /StartComponentCleanup works through the superseded components.
                superseded = self.usage.files.get("superseded", 0) / disk_usage.GIB
                self._wait(_COMPONENT_CLEANUP)
                self._wait((_COMPONENT_CLEANUP_PER_GIB[0] * superseded,
                            _COMPONENT_CLEANUP_PER_GIB[1] * superseded))
                self.usage.delete("superseded")
                if hygiene.reset_base:
                    self.usage.delete("windows", disk_usage.RESET_BASE_EXTRA)
                yield from self._stage_marker("cleanup", Status.INFO,
                                              "component cleanup exited 0")
            if hygiene.wu_cache:
                self.usage.delete("download")
            if hygiene.hiberfile:
                self.usage.delete("hiberfile")
            if hygiene.pagefile and self.record.get("pagefile_off") and _calls(
                    script, "$State.pagefile_off"):
                # A refresh's update restart deleted pagefile.sys (_update_restart).
                yield from self._stage_marker(
                    "cleanup", Status.INFO,
                    "pagefile.sys went with the update restart: no restart for it here")
            elif hygiene.pagefile:
                # pagefile.sys is deleted by the next boot.
                yield from self._reboot_and_resume("cleanup")
                self.usage.delete("pagefile")
        state = self.record.get("device_encryption", "FullyDecrypted")
        if _calls(script, "Get-BitLockerVolume") and state != "FullyDecrypted":
            raise _StageFailed(f"C: is {state}: device encryption was not prevented")
        if hygiene.zero_free_space and _calls(script, "Clear-OsbuildFreeSpace"):
            self._wait((60.0, 300.0))  # writes zeros over every free block
            self.usage.zero_free_space()
        if _calls(script, "Get-OsbuildBuiltinAdministrator"):
            # The built-in Administrator, found by SID, gets a throwaway password and is
            # disabled unless cloudbase-init manages it (by its local name).
            builtin = accounts.local_name(self.record["language"], accounts.BUILTIN_ADMINISTRATOR)
            managed = self.record.get("cloudbase_init_username") == builtin
            self.record["builtin_administrator"] = {
                "enabled": managed, "password": "throwaway"}
        return
        yield

    def _stage_script(self, stage: str) -> str:
        """The text of a rendered stage script on the config ISO ('' when missing)."""
        config = self.config
        data = config.iso.read(f"{layout.SCRIPTS_DIR}/stage-{stage}.ps1") if config else None
        return (data or b"").decode("utf-8-sig", "replace")

    def _stage_sysprep(self, plan: layout.GuestPlan) -> Iterator[GuestEvent]:
        blocking = self.record.get("appx_user_updated") or []
        if blocking and _calls(self._stage_script("sysprep"), "Remove-OsbuildBlockingAppx"):
            for package in blocking:
                yield from self._stage_marker("sysprep", Status.INFO, f"removing {package}")
            self.record["appx_removed"] = blocking
            self.record["appx_user_updated"] = blocking = []
        if blocking:
            # Sysprep refuses to generalize and says why in setuperr.log.
            self._wait((20.0, 40.0))
            raise _StageFailed(f"SYSPRP Package {blocking[0]} was installed for a user, but "
                               "not provisioned for all users. This package will not function "
                               "properly in the sysprep image.")
        # templates/scripts/firstlogon.ps1 and stage-sysprep.ps1: sysprep /quit, then the
        # power-off protocol of osbuild/markers.py: sysprep:start (just written) stays on the
        # console for SYSPREP_HOLD seconds at least, sysprep:ok, power-off.
        started = self.t
        seconds = self.scenario.sysprep_seconds
        if seconds is None:
            self._wait(_SYSPREP)
        else:
            self.t += seconds
        errors = self._sysprep_errors()
        if errors:
            # sysprep /quit returns 0 either way; the image state and setuperr.log tell.
            lines = [setuperr_message(line) for line in errors if line.strip()]
            quoted = " | ".join(lines[:stages.SYSPREP_ERROR_LINES])
            raise _StageFailed(f"sysprep exited 0, image state {_IMAGE_STATE_COMPLETE}: {quoted}")
        count = int(self.record.get("generalize_count") or 0)
        if count >= windows.SYSPREP_GENERALIZE_LIMIT:
            # Windows generalizes one installation a limited number of times; past it sysprep
            # stops with this error (KB929828's text for the older rearm limit).
            raise _StageFailed("A fatal error occurred while trying to sysprep the machine. "
                               f"(generalized {count} times already)")
        self.record["generalize_count"] = count + 1
        self.record["sysprep"] = True
        self.record["stage"] = "sysprep"
        yield from self._write_disk()
        yield from self._post_sysprep_ack()
        # The hold is a promise to the orchestrator in the cloud's time, not guest work: a
        # faster work pace must not shorten it (at work_pace 3 it was 60 s against the
        # watcher's 60 s longest poll, and loaded test runs lost sysprep:start).
        self.t = max(self.t, started + markers.SYSPREP_HOLD * self.work_pace)
        latest = started + self.unread_hold * self.work_pace
        if latest > self.t:
            yield GuestEvent(self.t, AwaitConsoleRead(since=started, latest=latest))
        yield from self._stage_marker("sysprep", Status.OK)
        yield self._shut_down()

    def _post_sysprep_ack(self) -> Iterator[GuestEvent]:
        """The driver posts sysprep:ok to Nova's metadata service (Send-OsbuildSysprepAck in
        lib.ps1) when its script says so; without a network there is nothing to post to."""
        config = self.config
        driver = config.iso.read(layout.FIRSTLOGON_SCRIPT) if config else None
        if config is None or config.nonce is None or not _calls(
                (driver or b"").decode("utf-8-sig", "replace"), "Send-OsbuildSysprepAck"):
            return
        self._wait(_CLOUDBASE_STEP)
        if not self.metadata.network:
            yield from self._stage_marker(
                "sysprep", Status.INFO, "sysprep:ok not posted to the metadata service: Unable "
                "to connect to the remote server")
            return
        yield GuestEvent(self.t, PostPassword(markers.sysprep_ack(config.nonce)))

    def _shut_down(self) -> GuestEvent:
        seconds = self.scenario.shutdown_seconds
        self.t += self.rng.uniform(*_SHUTDOWN) if seconds is None else seconds
        return GuestEvent(self.t, PowerOff())

    def _sysprep_errors(self) -> list[str]:
        """The lines sysprep writes to setuperr.log when it refuses to generalize."""
        stamp = (self.started_at + timedelta(seconds=self.t)).strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"{stamp}, Error                 {line}" for line in self.scenario.sysprep_errors]
        if self.pending_reboot:
            lines += [f"{stamp}, Error                 {line}" for line in _PENDING_REBOOT_ERRORS]
        return lines

    # ---- a deployed instance

    def _deployed(self, device: AttachedDevice) -> Iterator[GuestEvent]:
        record = read_disk_record(self.disks[self._index(device)]) or {}
        needed = windows.STORAGE_DRIVER_FOR_BUS.get(device.bus or "")
        if needed is not None and needed not in record.get("drivers", []):
            return  # INACCESSIBLE_BOOT_DEVICE: Windows never gets to write anything
        self._wait(_WINDOWS_BOOT)
        if not record.get("sysprep") or not record.get("cloudbase_init"):
            return  # Windows sits at the logon screen; nothing on the serial port
        # The instance's disk holds what its image held (a refresh captures all of it again),
        # and its first boot makes pagefile.sys anew: stage-cleanup deleted it from the image
        # and handed the page file back to Windows' automatic management.
        self.usage = DiskUsage.from_record(record.get("disk"))
        missing_pagefile = disk_usage.PAGEFILE - self.usage.files.get("pagefile", 0)
        if missing_pagefile > 0:
            self.usage.write("pagefile", missing_pagefile)
        services = record.get("cloudbase_init_metadata_services") or []
        service = self.metadata.service(services)
        if service is None:
            # No metadata service answered (cloudbase/cloudbase-init, cloudbaseinit/metadata/
            # factory.py: CloudbaseInitException "No available service found"): nothing that
            # needs metadata runs, no password and no user data.
            yield self._log(self.rng.randint(1000, 9999), "ERROR", "cloudbaseinit.init",
                            "No available service found")
            return
        # cloudbase-init runs in specialize (conf\Unattend.xml), Windows reboots, then the
        # service runs at startup and sets the password.
        self._wait(_SPECIALIZE)
        yield from self._cloudbase_run(service, ["SetHostNamePlugin", "NTPClientPlugin",
                                                 "MTUPlugin"], password=False)
        target = yield from self._restart()
        if target is None or target[0] != "disk":
            return
        self._wait(_WINDOWS_BOOT)
        missing = [group for group in record.get("cloudbase_init_groups", [])
                   if group not in accounts.local_groups(record.get("language", "en-US"))]
        yield from self._cloudbase_run(service, [
            "CreateUserPlugin", "SetUserPasswordPlugin", "SetUserSSHPublicKeysPlugin",
            "ExtendVolumesPlugin", "UserDataPlugin", "LocalScriptsPlugin",
        ], password=True, missing_groups=missing)
        if self._user_data_starts_driver():
            yield from self._refresh(device, record)

    def _user_data_starts_driver(self) -> bool:
        """cloudbase-init runs ``#ps1_sysnative`` user data as SYSTEM; osbuild's refresh
        script starts the first-logon driver from the drive holding the tag file."""
        text = (self.metadata.user_data or b"").decode("utf-8", "replace")
        driver = layout.FIRSTLOGON_SCRIPT.replace("/", "\\")
        tag = layout.TAG_FILE.replace("/", "\\")
        return text.startswith("#ps1_sysnative") and driver in text and tag in text

    def _refresh(self, device: AttachedDevice, record: dict[str, Any]) -> Iterator[GuestEvent]:
        """The driver on an installed Windows: the refresh plan's stages, as SYSTEM."""
        self._find_config()
        config = self.config
        if config is None or config.plan is None or config.nonce is None:
            return  # the driver finds no plan: it writes nothing a watcher would accept
        self.target = device
        self.record = {**record, "update_passes": 0, "build_id": config.plan.build_id,
                       "pagefile_off": False,
                       "refreshes": int(record.get("refreshes") or 0) + 1}
        self._wait(_FIRSTLOGON)
        yield from self._firstlogon(config.plan)

    def _log(self, pid: int, level: str, name: str, message: str) -> GuestEvent:
        when = self.started_at + timedelta(seconds=self.t)
        stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
        return self._say(f"{stamp} {pid} {level} {name} [-] {message}")

    def _cloudbase_run(self, service: str, plugins: list[str], *, password: bool,
                       missing_groups: list[str] | None = None) -> Iterator[GuestEvent]:
        pid = self.rng.randint(1000, 9999)
        yield self._log(pid, "INFO", "cloudbaseinit.init", f"Metadata service loaded: '{service}'")
        for plugin in plugins:
            self._wait(_CLOUDBASE_STEP)
            yield self._log(pid, "INFO", "cloudbaseinit.init", f"Executing plugin '{plugin}'")
            if self.scenario.cloudbase_init_never_finishes:
                raise _Halt
            if plugin == "CreateUserPlugin" and missing_groups:
                # NetLocalGroupAddMembers with a name this Windows does not have.
                yield self._log(pid, "ERROR", "cloudbaseinit.plugins.windows.createuser",
                                f"Cannot add user to group {missing_groups[0]!r}: "
                                "NERR_GroupNotFound (2220)")
            # Only the HTTP service can take the encrypted password back (cloudbase-init's
            # docs: HttpService "also supports password related capabilities"); from a config
            # drive the plugin has nowhere to post it.
            if plugin == "SetUserPasswordPlugin" and password and service == "HttpService":
                yield from self._post_password(pid)
        self._wait(_CLOUDBASE_STEP)
        yield self._log(pid, "INFO", "cloudbaseinit.init", "Plugins execution done")

    def _post_password(self, pid: int) -> Iterator[GuestEvent]:
        if self.public_key is None or self.scenario.no_password:
            return
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = None
        try:
            loaded = serialization.load_ssh_public_key(self.public_key.strip().encode())
            key = loaded if isinstance(loaded, rsa.RSAPublicKey) else None
        except (ValueError, TypeError):
            key = None
        if key is None:
            yield self._log(pid, "ERROR", "cloudbaseinit.plugins.common.setuserpassword",
                            "Cannot encrypt the password: the public key is not an RSA key")
            return
        if self.scenario.wrong_key_password:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        secret = cloudbase_init_password()
        encrypted = key.encrypt(secret.encode(), padding.PKCS1v15())
        yield GuestEvent(self.t, PostPassword(base64.b64encode(encrypted).decode("ascii")))


def _is_client(image_name: str) -> bool:
    release = windows.release_of_image(image_name)
    return release is not None and not release.server


def _calls(script: str, command: str) -> bool:
    """Whether a rendered script runs ``command`` (its definition or a comment is not a call):
    the simulated guest does what the script does, no more."""
    pattern = rf"^(?!\s*function\s)[^#\n]*(?<![\w-]){re.escape(command)}(?![\w-])"
    return re.search(pattern, script, re.MULTILINE) is not None


# What sysprep writes to setuperr.log when generalize meets a pending reboot (as reported
# from real builds; the signals sysprep checks are the ones listed in windows-guest.md).
_PENDING_REBOOT_ERRORS = (
    "SYSPRP Sysprep_Clean_Validate_Opk: There are one or more Windows updates that require a "
    "reboot. To run Sysprep, reboot the computer and restart the application.[gle=0x000036b7]",
    "[0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing "
    "'Sysprep_Clean_Validate_Opk' from C:\\Windows\\System32\\spopk.dll; dwRet = 0x36b7",
    "SYSPRP RunPlatformActions:Failed while validating Sysprep session actions; dwRet = 0x36b7",
)
_IMAGE_STATE_COMPLETE = "IMAGE_STATE_COMPLETE"
# stage-sysprep.ps1's `-replace` of a setuperr.log line's timestamp and level.
SETUPERR_PREFIX_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, *(Error|Warning|Info) *")


def setuperr_message(line: str) -> str:
    return SETUPERR_PREFIX_RE.sub("", line).strip()


class _StageFailed(Exception):
    """A stage script threw; the driver writes ``<stage>:fail:<message>``."""


def _conf_value(conf: bytes, option: str) -> str:
    text = conf.decode("utf-8", "replace")
    match = re.search(rf"^\s*{option}\s*=\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip().replace("$$", "$") if match else ""


def _conf_list(conf: bytes, option: str) -> list[str]:
    return [item.strip() for item in _conf_value(conf, option).split(",") if item.strip()]


def _metadata_services(conf: bytes) -> list[str]:
    return _conf_list(conf, "metadata_services")


def cloudbase_init_password(length: int = 20) -> str:
    """A password as cloudbase-init generates it (1.1.6: osutils/base.py and windows.py
    generate_random_password): base64 of random bytes without '/' and '+', cut to
    user_password_length (20 by default), drawn again until it has a lower-case letter, an
    upper-case letter and a digit (Windows' complexity rules)."""
    while True:
        drawn = base64.b64encode(secrets.token_bytes(256)).replace(b"/", b"").replace(b"+", b"")
        password = drawn[:length].decode("ascii")
        if all(re.search(pattern, password) for pattern in ("[a-z]", "[A-Z]", "[0-9]")):
            return password


def _uuid(rng: random.Random) -> str:
    raw = f"{rng.getrandbits(128):032x}"
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
