"""Every guest stage, declared once.

The stage table below is what the other places read: render plans the stages a build needs
and writes each one's script (:func:`planned`, :func:`script_file`), the first-logon driver
gets the script names and the reboot-settling stages through the render context, the spec's
``builder.stage_timeouts`` has one field per stage with its default, the watcher follows
:func:`watch_order`, and the simulated guest runs the plan's stages by this table. Adding a
stage touches this table, its template and the simulated guest's model of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from osbuild.media import layout

# Reboots the first-logon driver makes while Windows reports a pending reboot before a
# settling stage (cleanup, sysprep); beyond this the guest reports a failure: sysprep would
# refuse to generalize, and a reboot that never clears the flag is not going to.
MAX_SETTLE_REBOOTS = 3
# Windows Update search, download and install: attempts and the first back-off (doubling).
UPDATE_ATTEMPTS = 5
UPDATE_RETRY_DELAY = 60
# How long the updates stage waits for the network after a (re)boot before it tries anyway.
NETWORK_WAIT = 600
# Lines of setuperr.log a `sysprep:fail` marker quotes (cut to markers.DETAIL_MAX).
SYSPREP_ERROR_LINES = 3
# The name the updates stage resolves to tell that the network is up.
UPDATE_HOST = "download.windowsupdate.com"


def _always(plan: layout.GuestPlan) -> bool:
    return True


@dataclass(frozen=True)
class GuestStage:
    name: str
    windows_pass: str  # the answer-file pass that starts it
    account: str  # who runs it
    # Template of the stage script the first-logon driver runs (None: written by the
    # answer file's cmd lines or by the driver itself).
    script: str | None
    default_timeout: float  # seconds without progress: builder.stage_timeouts.<name>
    # Before the script runs, the driver restarts Windows while a reboot is pending.
    settle_reboots: bool = False
    needed: Callable[[layout.GuestPlan], bool] = _always

    @property
    def in_plan(self) -> bool:
        """Run by the first-logon driver from the plan (not by Setup's answer file)."""
        return self.script is not None


_DRIVER = "oobeSystem (FirstLogonCommands)"
_BUILD_ACCOUNT = "build account (autologon); SYSTEM (resume task) after a reboot"

GUEST_STAGES: tuple[GuestStage, ...] = (
    GuestStage("winpe", "windowsPE", "SYSTEM (Windows Setup)", None, 3600.0),
    GuestStage("specialize", "specialize", "SYSTEM (Windows Setup)", None, 1800.0),
    GuestStage("firstlogon", _DRIVER, "build account (autologon)", None, 1800.0),
    GuestStage("virtio", _DRIVER, _BUILD_ACCOUNT, "scripts/stage-virtio.ps1.j2", 1200.0,
               needed=lambda plan: plan.virtio.guest_tools or plan.virtio.qemu_ga),
    GuestStage("cloudbaseinit", _DRIVER, _BUILD_ACCOUNT, "scripts/stage-cloudbaseinit.ps1.j2",
               1200.0),
    GuestStage("updates", _DRIVER, _BUILD_ACCOUNT, "scripts/stage-updates.ps1.j2", 14400.0,
               needed=lambda plan: plan.updates.enabled),
    GuestStage("scripts", _DRIVER, _BUILD_ACCOUNT, "scripts/stage-scripts.ps1.j2", 3600.0,
               needed=lambda plan: bool(plan.scripts)),
    GuestStage("cleanup", _DRIVER, _BUILD_ACCOUNT, "scripts/stage-cleanup.ps1.j2", 3600.0,
               settle_reboots=True),
    GuestStage("sysprep", _DRIVER, _BUILD_ACCOUNT, "scripts/stage-sysprep.ps1.j2", 1800.0,
               settle_reboots=True),
)


def names() -> tuple[str, ...]:
    return tuple(stage.name for stage in GUEST_STAGES)


def by_name(name: str) -> GuestStage | None:
    return next((stage for stage in GUEST_STAGES if stage.name == name), None)


def planned(plan: layout.GuestPlan) -> tuple[str, ...]:
    """The driver's stages this plan needs, in run order."""
    return tuple(s.name for s in GUEST_STAGES if s.in_plan and s.needed(plan))


def watch_order(plan_stages: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Every stage a build passes through: Setup's and the driver's, then the plan's."""
    return (*(s.name for s in GUEST_STAGES if not s.in_plan), *plan_stages)


def script_name(stage: str) -> str:
    """The file name of a plan stage's script, beside the first-logon driver."""
    return f"stage-{stage}.ps1"


def script_file(stage: str) -> str:
    """The ISO path of a plan stage's script."""
    return f"{layout.SCRIPTS_DIR}/{script_name(stage)}"


def settling() -> tuple[str, ...]:
    return tuple(s.name for s in GUEST_STAGES if s.settle_reboots)
