"""The stand-in media the sim seeds: vendor layouts, boot entries, editions, deterministic."""

from __future__ import annotations

import io

import pycdlib
import pytest

from osbuild.media import eltorito, windows
from osbuild_sim import media

SEEDED = [
    "windows-server-2016-x64.iso",
    "windows-server-2019-x64.iso",
    "windows-server-2022-x64.iso",
    "windows-server-2025-x64.iso",
    "windows-server-2025-x64-noprompt.iso",
    "windows-10-x64.iso",
    "windows-11-enterprise-x64.iso",
    "windows-11-enterprise-x64-noprompt.iso",
    "virtio-win.iso",
]
VERSION_OF = {
    "windows-server-2016-x64.iso": "2016", "windows-server-2019-x64.iso": "2019",
    "windows-server-2022-x64.iso": "2022", "windows-server-2025-x64.iso": "2025",
    "windows-server-2025-x64-noprompt.iso": "2025", "windows-11-enterprise-x64.iso": "11",
    "windows-11-enterprise-x64-noprompt.iso": "11", "windows-10-x64.iso": "10",
}


def files_of(data: bytes) -> dict[str, dict[str, str]]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        return eltorito.list_files(iso)
    finally:
        iso.close()


def read(data: bytes, path: str) -> bytes | None:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        return eltorito.read_file(iso, eltorito.list_files(iso), path)
    finally:
        iso.close()


def test_seeded_names_formats_and_sizes() -> None:
    seeds = media.seed_images()
    assert [s.name for s in seeds] == SEEDED
    for seed in seeds:
        assert (seed.disk_format, seed.container_format) == ("iso", "bare")
        assert len(seed.data) < 1024 * 1024
        # What Glance's format inspection looks for in an ISO.
        assert seed.data[32768 + 1:32768 + 6] == b"CD001"
        noprompt = seed.name.endswith("-noprompt.iso")
        assert (seed.properties.get("osbuild_uefi_noprompt") == "true") is noprompt


def test_stand_ins_are_deterministic() -> None:
    before = {s.name: s.data for s in media.seed_images()}
    media._windows_iso.cache_clear()
    media.virtio_iso.cache_clear()
    media._seed_images.cache_clear()
    assert {s.name: s.data for s in media.seed_images()} == before
    assert media.cloudbase_msi_standin() == media.cloudbase_msi_standin()
    assert media.cloudbase_msi_standin().startswith(b"\xd0\xcf\x11\xe0")


@pytest.mark.parametrize("name", [n for n in SEEDED if n != "virtio-win.iso"])
def test_windows_media(name: str) -> None:
    data = {s.name: s.data for s in media.seed_images()}[name]
    version = VERSION_OF[name]
    files = files_of(data)
    for path in ("setup.exe", "boot/etfsboot.com", "efi/microsoft/boot/efisys.bin",
                 "efi/microsoft/boot/efisys_noprompt.bin", "sources/boot.wim",
                 "sources/install.wim"):
        assert path in files, path

    entries = eltorito.read_boot_entries_fp(io.BytesIO(data))
    expected_efi = ("efi/microsoft/boot/efisys_noprompt.bin" if name.endswith("-noprompt.iso")
                    else "efi/microsoft/boot/efisys.bin")
    assert [(e.platform, e.path) for e in entries] == [
        ("BIOS", "boot/etfsboot.com"), ("EFI", expected_efi)]

    images = media.read_wim_images(read(data, "sources/install.wim") or b"")
    if windows.is_server(version):
        editions = windows.SERVER_EDITIONS
    else:
        editions = media.CLIENT_MEDIA_EDITIONS
    assert [i.name for i in images] == [windows.Edition(version, e).image_name for e in editions]
    assert [i.index for i in images] == list(range(1, len(editions) + 1))
    assert {i.build for i in images} == {windows.BUILD_NUMBERS[version]}


def test_server_image_names_and_edition_ids() -> None:
    images = media.read_wim_images(media.install_wim_xml("2019"))
    assert [(i.name, i.edition_id) for i in images] == [
        ("Windows Server 2019 SERVERSTANDARDCORE", "ServerStandardCor"),
        ("Windows Server 2019 SERVERSTANDARD", "ServerStandard"),
        ("Windows Server 2019 SERVERDATACENTERCORE", "ServerDatacenterCor"),
        ("Windows Server 2019 SERVERDATACENTER", "ServerDatacenter"),
    ]
    evaluation = media.read_wim_images(media.install_wim_xml("2022", evaluation=True))
    assert [i.edition_id for i in evaluation] == [
        "ServerStandardEvalCor", "ServerStandardEval", "ServerDatacenterEvalCor",
        "ServerDatacenterEval"]
    assert all(i.evaluation for i in evaluation) and not any(i.evaluation for i in images)
    assert media.install_wim_xml("2019").startswith(b"\xff\xfe<\x00W\x00I\x00M\x00")
    assert media.read_wim_images(b"MSWIM\x00\x00\x00 binary") == []


def test_virtio_layout() -> None:
    data = media.virtio_iso()
    files = files_of(data)
    for driver, folders in windows.VIRTIO_DRIVER_FOLDERS.items():
        for folder in folders:
            assert f"{driver}/{folder}/amd64/{driver}.inf".lower() in files
            assert f"{driver}/{folder}/amd64/{driver}.cat".lower() in files
    assert not any(p.startswith("qxldod/2k22/") for p in files)  # older releases only
    for path in (windows.VIRTIO_GT_MSI, windows.VIRTIO_GUEST_TOOLS, windows.VIRTIO_QEMU_GA_MSI):
        assert path in files
    # Driver folders keep their case through Joliet (NetKVM, Balloon), as on the real ISO.
    assert {"joliet_path": "/NetKVM/2k22/amd64/netkvm.inf"} in files.values()
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
    finally:
        iso.close()
    assert label == f"virtio-win-{media.VIRTIO_VERSION}"
