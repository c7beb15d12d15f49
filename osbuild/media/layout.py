"""The config ISO's layout and the guest plan: the contract between render, guest and sim.

Paths are POSIX-style, relative to the ISO root, as the guest sees them through Joliet/Rock
Ridge. The first-logon driver finds the config ISO by looking for :data:`TAG_FILE` on every
drive, reads :data:`NONCE_FILE` for the marker nonce and :data:`PLAN_FILE` for what to run.
The simulated guest reads the same files.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VOLUME_LABEL = "OSBUILD_CONFIG"
ANSWER_FILE = "autounattend.xml"
CONFIG_DIR = "osbuild"
TAG_FILE = "osbuild/osbuild.tag"
TAG_CONTENT = "osbuild config media\n"
NONCE_FILE = "osbuild/nonce.txt"
PLAN_FILE = "osbuild/plan.json"
SCRIPTS_DIR = "osbuild/scripts"
FIRSTLOGON_SCRIPT = "osbuild/scripts/firstlogon.ps1"
USER_SCRIPTS_DIR = "osbuild/scripts/user"
CLOUDBASE_DIR = "osbuild/cloudbase-init"
CLOUDBASE_CONF = "osbuild/cloudbase-init/cloudbase-init.conf"
CLOUDBASE_UNATTEND_CONF = "osbuild/cloudbase-init/cloudbase-init-unattend.conf"
CLOUDBASE_MSI = "osbuild/cloudbase-init/CloudbaseInitSetup_x64.msi"

PLAN_FORMAT = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanWindows(_Frozen):
    version: str
    image_name: str  # `/IMAGE/NAME` the answer file selects
    firmware: Literal["bios", "uefi"]
    disk_bus: Literal["virtio", "scsi", "sata"]


class PlanVirtio(_Frozen):
    os_folder: str
    winpe_drivers: tuple[str, ...]
    guest_tools: bool
    qemu_ga: bool


class PlanCloudbaseInit(_Frozen):
    # Exactly one of `path` (on this ISO) or `url` (downloaded by the guest) is set.
    path: str | None = None
    url: str | None = None
    sha256: str
    # The groups cloudbase-init adds its user to: a well-known SID, which the guest turns
    # into this Windows' (localised) name, or a name used as it is.
    groups: tuple[str, ...] = ()


class PlanUpdates(_Frozen):
    enabled: bool
    max_passes: int
    # Each Windows Update search, download and install: attempts, first back-off in seconds
    # (doubling), and how long to wait for the network first (osbuild.media.stages).
    attempts: int = 5
    retry_delay: int = 60
    network_wait: int = 600


class PlanHygiene(_Frozen):
    """What the cleanup stage removes before capture (spec `hygiene:`)."""

    component_cleanup: bool = True
    reset_base: bool = False
    wu_cache: bool = True
    pagefile: bool = True
    hiberfile: bool = True
    zero_free_space: bool = True


class GuestPlan(_Frozen):
    """What the first-logon driver runs, in order; written to :data:`PLAN_FILE`."""

    format: int = PLAN_FORMAT
    build_id: str
    # install: Setup from the ISO, then the stages; refresh: the stages on an installed image.
    kind: Literal["install", "refresh"] = "install"
    windows: PlanWindows
    virtio: PlanVirtio
    cloudbase_init: PlanCloudbaseInit
    updates: PlanUpdates
    hygiene: PlanHygiene = Field(default_factory=PlanHygiene)
    # First-logon stages in run order (osbuild.media.stages.planned).
    stages: tuple[str, ...]
    # Reboots the driver may make while Windows reports a pending reboot before cleanup
    # and sysprep; one more pending reboot is a failure.
    settle_reboots: int = 3
    # User scripts as ISO paths, run in this order in the `scripts` stage.
    scripts: tuple[str, ...] = Field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> GuestPlan:
        return cls.model_validate_json(text)
