"""A virtio-win ISO without a build of the drivers for the Windows release fails in preflight."""

from __future__ import annotations

import pytest

from osbuild_sim.media import virtio_iso
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _upload(cloud: Cloud, name: str, data: bytes) -> str:
    conn = cloud.sim.connect()
    return str(conn.image.create_image(name=name, disk_format="iso", container_format="bare",
                                       data=data).id)


def test_an_older_virtio_win_without_the_release_folder_fails_in_preflight(
        cloud: Cloud) -> None:
    # Without this check WinPE finds no storage driver and Setup waits out its 1-hour stage.
    old = _upload(cloud, "virtio-win-old.iso", virtio_iso(releases=("2k16", "2k19")))
    spec = cloud.spec(virtio={"iso_image": "virtio-win-old.iso"})
    run = cloud.build(spec)
    assert run.exit_code == 2, run.why
    assert ("virtio.iso_image: 'virtio-win-old.iso' has no 2k22 build of viostor, vioscsi, "
            "NetKVM, vioserial, Balloon (Windows 2022); its folders for them: 2k16, 2k19"
            in run.why)
    assert not run.named("stage")
    assert cloud.leftovers(keep={old}) == []


def test_the_current_virtio_win_passes_the_check(cloud: Cloud) -> None:
    _upload(cloud, "virtio-win-2022.iso", virtio_iso(releases=("2k19", "2k22")))
    run = cloud.build(cloud.spec(virtio={"iso_image": "virtio-win-2022.iso"},
                                 updates={"enabled": False}, verify={"enabled": False}))
    assert run.exit_code == 0, run.why
