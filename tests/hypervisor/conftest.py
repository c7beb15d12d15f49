"""Fixtures for the hypervisor tier: the functional tier's real stack with Nova's libvirt
driver booting QEMU (TCG) guests from a stand-in Windows ISO (``tox -e hypervisor``).

Every test here is marked ``hypervisor`` and skipped, with the reason, unless the tier runs
(``OSBUILD_HYPERVISOR_TIER=1``, set by tox) and libvirt, QEMU and the stand-in's packages
are installed. Work files live under /var/tmp (QEMU opens volumes with O_DIRECT, and runs
as libvirt-qemu: the folders must be traversable), in a folder its session owns: each
session first removes those of sessions that were killed; the stand-in media are cached under
``OSBUILD_TEST_CACHE`` (default ``~/.cache/osbuild-tests``), where entries built from other
inputs are pruned once unused for an hour; the builders' domain XML goes
to ``$OSBUILD_TEST_ARTIFACTS/hypervisor`` (default ``.artifacts/hypervisor`` in the repository).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import libvirtd
from tests.support.artifacts import artifacts_dir
from tests.support.libvirtd import Libvirt
from tests.support.owneddirs import OwnedDir, make_owned_dir, sweep_stale
from tests.support.realservices import RealServices, missing_requirements
from tests.support.realstack import RealStack, missing_cinder
from tests.support.standin_windows import StandinMedia, build_standin, missing_tools

TIER_ENV = "OSBUILD_HYPERVISOR_TIER"
CACHE_ENV = "OSBUILD_TEST_CACHE"
KEEP_ENV = "OSBUILD_KEEP_WORKDIR"  # keep /var/tmp/osbuild-hypervisor-* (logs) after the run
WORKDIR_PARENT = Path("/var/tmp")
WORKDIR_PREFIX = "osbuild-hypervisor-"
# The seeded names of the Windows ISOs the examples use, and the version each stands in for:
# the BIOS example's, and the UEFI example's before `osbuild media prepare-uefi`.
WINDOWS_ISOS = {"windows-server-2022-x64.iso": "2022", "windows-server-2025-x64.iso": "2025"}
_HERE = Path(__file__).parent
_REPORTS: list[str] = []
_STARTED = pytest.StashKey[float]()


def _why_not() -> str | None:
    if os.environ.get(TIER_ENV) != "1":
        return f"the hypervisor tier runs by itself: tox -e hypervisor ({TIER_ENV}=1)"
    reason = missing_requirements() or missing_cinder() or libvirtd.missing()
    if reason:
        return reason
    lacking = missing_tools()
    return "stand-in Windows needs: " + ", ".join(lacking) if lacking else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_not()
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.hypervisor)
            item.add_marker(pytest.mark.slow)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.monotonic()


def make_workdir() -> OwnedDir:
    """The session's work folder, after removing those of killed sessions (a live
    session's, from this checkout or another, holds its lock and stays)."""
    sweep_stale(WORKDIR_PREFIX, WORKDIR_PARENT)
    owned = make_owned_dir(WORKDIR_PREFIX, WORKDIR_PARENT)
    owned.path.chmod(0o755)  # QEMU runs as libvirt-qemu and opens files below
    return owned


@pytest.fixture(scope="session")
def hv_workdir() -> Iterator[Path]:
    owned = make_workdir()
    yield owned.path
    if os.environ.get(KEEP_ENV):
        owned.release()  # kept for its logs: later sessions' sweeps leave it alone
    else:
        owned.remove()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return artifacts_dir("hypervisor")


@pytest.fixture(scope="session")
def standin() -> dict[str, StandinMedia]:
    """The stand-in Windows ISOs by the seeded Glance name they replace."""
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "osbuild-tests")
    found = {}
    for name, version in WINDOWS_ISOS.items():
        began = time.monotonic()
        media = found[name] = build_standin(cache, version)
        _REPORTS.append(f"stand-in Windows ISO {media.iso} ({media.iso.stat().st_size >> 20} "
                        f"MiB, kernel {media.kernel_version}) ready in "
                        f"{time.monotonic() - began:.1f}s")
    return found


@pytest.fixture(scope="session")
def libvirt(hv_workdir: Path) -> Iterator[Libvirt]:
    with Libvirt(hv_workdir / "libvirt") as lv:
        yield lv


@pytest.fixture(scope="session")
def hv_stack(hv_workdir: Path, libvirt: Libvirt,
             standin: dict[str, StandinMedia]) -> Iterator[RealStack]:
    with RealServices(hv_workdir / "services") as rs, RealStack(
        rs, hv_workdir / "stack", libvirt_uri=libvirt.uri,
        instance_name_template=libvirt.name_template,
        media_files={name: media.iso for name, media in standin.items()},
    ) as stack:
        _REPORTS.append(stack.report() + f", libvirt {libvirt.timings.get('libvirt', 0):.1f}s")
        yield stack
        _REPORTS.append(stack.report().replace("real stack:", "real stack at the end:"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    for line in _REPORTS:
        terminalreporter.write_line(line)
    started = config.stash.get(_STARTED, None)
    if started is not None and _REPORTS:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        terminalreporter.write_line(f"hypervisor tier: {time.monotonic() - started:.0f} s "
                                    f"(load average now {load} on {os.cpu_count()} cores)")
