"""What the answer file says: locale, drivers, disk layout, accounts and the guest's commands."""

from __future__ import annotations

import base64
import string
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from osbuild.markers import Marker, Status
from osbuild.media import layout, windows
from osbuild.spec import BuildSpec

# The config ISO's letter is unknown in WinPE and later; every candidate is tried.
CONFIG_DRIVE_LETTERS = tuple(string.ascii_uppercase[2:])
# Client editions disable the built-in Administrator, so they get this local account.
CLIENT_BUILD_ACCOUNT = "osbuild"
SERVER_BUILD_ACCOUNT = "Administrator"
# Autologon is needed once, for FirstLogonCommands; later stages resume as SYSTEM from a
# startup task, so no further logon (and no stored password) is needed.
AUTOLOGON_COUNT = 1
EFI_PARTITION_MB = 260  # 100 MB is too small on 4Kn disks; 260 MB works on both
BIOS_SYSTEM_PARTITION_MB = 100
MSR_PARTITION_MB = 16


@dataclass(frozen=True)
class RegistryValue:
    """A DWORD the answer file sets in specialize on client editions."""

    key: str  # HKLM\...
    name: str
    value: int
    description: str
    build_only: bool  # removed again just before sysprep (stage-sysprep)

    @property
    def reg_add(self) -> str:
        return f"reg.exe add {self.key} /v {self.name} /t REG_DWORD /d {self.value} /f"

    @property
    def ps_path(self) -> str:
        return self.key.replace("HKLM\\", "HKLM:\\", 1)


CLIENT_REGISTRY = (
    # Windows 11 24H2 turns on device encryption (BitLocker) by itself on a clean install
    # with a TPM, and an image captured encrypted (its key sealed in this builder's vTPM)
    # boots nowhere else. Microsoft's documented switch, set before OOBE; kept.
    RegistryValue(r"HKLM\SYSTEM\CurrentControlSet\Control\BitLocker",
                  "PreventDeviceEncryption", 1, "no automatic device encryption",
                  build_only=False),
    # The Store updates its apps for the logged-on user: sysprep then refuses to generalize
    # ("installed for a user, but not provisioned for all users"). Group policy "Turn off
    # Automatic Download and Install of updates" (2 = off) and "Turn off Microsoft consumer
    # experiences" hold during the build; the image ships Windows' defaults.
    RegistryValue(r"HKLM\SOFTWARE\Policies\Microsoft\WindowsStore", "AutoDownload", 2,
                  "no Store app updates during the build", build_only=True),
    RegistryValue(r"HKLM\SOFTWARE\Policies\Microsoft\Windows\CloudContent",
                  "DisableWindowsConsumerFeatures", 1,
                  "no consumer apps during the build", build_only=True),
)


def _windows_path(iso_path: str) -> str:
    return iso_path.replace("/", "\\")


def _for_config_drive(command: str) -> str:
    """cmd text that runs ``command`` (with ``%L`` = drive letter) on the config ISO's drive."""
    letters = " ".join(CONFIG_DRIVE_LETTERS)
    tag = _windows_path(layout.TAG_FILE)
    return f"for %L in ({letters}) do @if exist %L:\\{tag} {command}"


def cmd_marker(stage: str, status: Status) -> str:
    """A cmd line that writes a marker to COM1, reading the nonce from the ISO at run time."""
    nonce_file = _windows_path(layout.NONCE_FILE)
    line = Marker(stage, status).render("%N")
    inner = (
        f'for /f "usebackq delims=" %N in ("%L:\\{nonce_file}") do @(echo {line})>COM1'
    )
    return "cmd.exe /c " + _for_config_drive(inner)


def resume_command() -> str:
    """The cmd arguments that run the first-logon driver from the config ISO."""
    script = _windows_path(layout.FIRSTLOGON_SCRIPT)
    return _for_config_drive(
        f"powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "
        f"%L:\\{script}"
    )


def obfuscate(password: str, suffix: str) -> str:
    """Windows' answer-file password encoding (not encryption: it only stops casual greps)."""
    return base64.b64encode((password + suffix).encode("utf-16-le")).decode("ascii")


def reveal(value: str, suffix: str) -> str | None:
    """:func:`obfuscate` undone; None when ``value`` is not such an encoding of anything."""
    try:
        text = base64.b64decode(value, validate=True).decode("utf-16-le")
    except (ValueError, UnicodeDecodeError):
        return None
    return text.removesuffix(suffix) if text.endswith(suffix) and text != suffix else None


# The elements whose <Value> Windows reads as a password: each is encoded with its own name.
_PASSWORD_ELEMENTS = ("Password", "AdministratorPassword")


def answer_file_passwords(data: bytes) -> set[str]:
    """Every password an answer file carries (AutoLogon, AdministratorPassword, local
    accounts), as Windows reads them: plain, or decoded when ``PlainText`` is false."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return set()
    found: set[str] = set()
    for element in root.iter():
        name = element.tag.rpartition("}")[2]
        if name not in _PASSWORD_ELEMENTS:
            continue
        children = {child.tag.rpartition("}")[2]: (child.text or "").strip()
                    for child in element}
        value = children.get("Value", "")
        if not value:
            continue
        plain = children.get("PlainText", "true").lower() == "true"
        password = value if plain else reveal(value, name)
        if password:
            found.add(password)
    return found


@dataclass(frozen=True)
class Command:
    order: int
    path: str
    description: str


def _commands(items: list[tuple[str, str]]) -> list[Command]:
    return [Command(i, path, text) for i, (path, text) in enumerate(items, start=1)]


def build_account(spec: BuildSpec) -> str:
    return SERVER_BUILD_ACCOUNT if windows.is_server(spec.windows.version) else CLIENT_BUILD_ACCOUNT


def driver_paths(spec: BuildSpec) -> list[dict[str, str]]:
    folder = windows.virtio_os_folder(spec.windows.version)
    paths: list[dict[str, str]] = []
    for driver in spec.virtio.winpe_drivers:
        for letter in windows.WINPE_DRIVE_LETTERS:
            paths.append(
                {"key": str(len(paths) + 1), "path": f"{letter}:\\{driver}\\{folder}\\amd64"}
            )
    return paths


def _modify(order: int, partition_id: int, fmt: str, label: str, *, letter: str | None = None,
            active: bool = False) -> dict[str, Any]:
    return {"order": order, "partition_id": partition_id, "format": fmt, "label": label,
            "letter": letter, "active": active}


def disk_layout(firmware: str) -> dict[str, Any]:
    if firmware == "uefi":
        # A Type EFI partition on an MBR disk aborts Setup, so UEFI always means GPT.
        return {
            "create": [
                {"order": 1, "type": "EFI", "size": EFI_PARTITION_MB},
                {"order": 2, "type": "MSR", "size": MSR_PARTITION_MB},
                {"order": 3, "type": "Primary", "size": None},
            ],
            "modify": [
                _modify(1, 1, "FAT32", "System"),
                _modify(2, 3, "NTFS", "Windows", letter="C"),
            ],
            "install_partition": 3,
        }
    return {
        "create": [
            {"order": 1, "type": "Primary", "size": BIOS_SYSTEM_PARTITION_MB},
            {"order": 2, "type": "Primary", "size": None},
        ],
        "modify": [
            _modify(1, 1, "NTFS", "System", active=True),
            _modify(2, 2, "NTFS", "Windows", letter="C"),
        ],
        "install_partition": 2,
    }


def needs_win11_bypass(spec: BuildSpec) -> bool:
    return windows.RELEASE[spec.windows.version].hardware_checks and not spec.windows.tpm


def context(spec: BuildSpec, password: str, *, image_name: str | None = None) -> dict[str, Any]:
    """Everything autounattend.xml.j2 needs; the template escapes every value."""
    win = spec.windows
    winpe = [(cmd_marker("winpe", Status.START), "osbuild progress marker")]
    if needs_win11_bypass(spec):
        # No vTPM on this cloud: let Setup install Windows 11 anyway.
        for check in ("BypassTPMCheck", "BypassSecureBootCheck", "BypassRAMCheck"):
            winpe.append(
                (f"reg.exe add HKLM\\SYSTEM\\Setup\\LabConfig /v {check} /t REG_DWORD /d 1 /f",
                 f"Windows 11 Setup: {check}")
            )
    specialize = [
        # Reaching specialize means WinPE applied the image and rebooted.
        (cmd_marker("winpe", Status.OK), "osbuild progress marker"),
        (cmd_marker("specialize", Status.START), "osbuild progress marker"),
        ('netsh.exe advfirewall firewall add rule name="osbuild ICMPv4 echo" '
         "protocol=icmpv4:8,any dir=in action=allow", "allow ping (IPv4)"),
        ('netsh.exe advfirewall firewall add rule name="osbuild ICMPv6 echo" '
         "protocol=icmpv6:128,any dir=in action=allow", "allow ping (IPv6)"),
    ]
    if not windows.is_server(win.version):
        specialize += [(value.reg_add, value.description) for value in CLIENT_REGISTRY]
    specialize.append((cmd_marker("specialize", Status.OK), "osbuild progress marker"))
    account = build_account(spec)
    client = not windows.is_server(win.version)
    return {
        "locale": {
            "ui": win.locale,
            "input": win.input_locale or win.locale,
            "system": win.locale,
            "user": win.locale,
        },
        "driver_paths": driver_paths(spec),
        "disk": disk_layout(win.firmware),
        "image_name": image_name or win.image_name,
        "product_key": win.resolved_product_key(),
        "owner": "osbuild",
        "winpe_commands": _commands(winpe),
        "specialize_commands": _commands(specialize),
        "timezone": win.timezone,
        "firstlogon_commands": _commands(
            [("cmd.exe /c " + resume_command(), "osbuild first-logon driver")]
        ),
        "autologon": {
            "count": AUTOLOGON_COUNT,
            "username": account,
            "password": obfuscate(password, "Password"),
        },
        # Servers log on as the built-in Administrator; clients leave it disabled and
        # without the build password (their build account is a LocalAccount).
        "administrator_password": (
            None if client else obfuscate(password, "AdministratorPassword")),
        "local_account": (
            {"name": account, "password": obfuscate(password, "Password")} if client else None
        ),
    }
