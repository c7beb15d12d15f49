"""One Windows catalog (osbuild.media.windows): the spec, the simulator and the README agree."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pycdlib
import pytest
from pydantic import ValidationError

from osbuild.media import windows
from osbuild.spec import BuildSpec, WindowsSpec
from osbuild_sim import media

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_row(key: str) -> str:
    """The README's spec-table row of ``key`` (the first table that has it)."""
    rows = [line for line in README.read_text().splitlines()
            if line.startswith(f"| `{key}` |")]
    assert rows, f"README has no table row for {key}"
    return rows[0]


def _windows(version: object) -> WindowsSpec:
    edition = "SERVERSTANDARD" if windows.is_server(str(version)) else "Pro"
    return WindowsSpec.model_validate(
        {"version": version, "edition": edition, "iso_image": "w.iso"})


@pytest.mark.parametrize("version", windows.VERSIONS)
def test_the_spec_accepts_every_catalog_release_as_text_or_number(version: str) -> None:
    assert _windows(version).version == version
    assert _windows(int(version)).version == version


def test_the_spec_refuses_anything_else_and_names_the_catalog() -> None:
    with pytest.raises(ValidationError) as info:
        _windows("2012")
    message = str(info.value)
    assert all(f"'{v}'" in message for v in windows.VERSIONS), message


def test_the_spec_schema_lists_the_catalog() -> None:
    schema = BuildSpec.model_json_schema()["$defs"]["WindowsSpec"]["properties"]["version"]
    assert schema["enum"] == [*windows.VERSIONS, *(int(v) for v in windows.VERSIONS)]


def test_the_simulator_seeds_installer_media_for_every_release() -> None:
    seeded = {s.properties["os_version"]: s for s in media.seed_images()
              if "os_version" in s.properties and not s.name.endswith("-noprompt.iso")}
    assert sorted(seeded) == sorted(windows.VERSIONS)
    for release in windows.RELEASES:
        seed = seeded[release.version]
        assert seed.name == media.seed_iso_name(release.version)
        iso = pycdlib.PyCdlib()
        iso.open_fp(io.BytesIO(seed.data))
        try:
            label = iso.pvd.volume_identifier.decode().strip()
            wim = io.BytesIO()
            iso.get_file_from_iso_fp(wim, iso_path="/SOURCES/INSTALL.WIM;1")
        finally:
            iso.close()
        assert label == release.media_label
        images = media.read_wim_images(wim.getvalue())
        assert {i.build for i in images} == {release.build}, release.version
        assert all(windows.is_server(release.version) == i.name.startswith("Windows Server")
                   for i in images)


def test_the_readme_tables_match_the_catalog() -> None:
    versions = re.findall(r"`([^`]+)`", _readme_row("version").split("|")[2])
    assert versions == list(windows.VERSIONS)
    editions = set(re.findall(r"`([^`]+)`", _readme_row("edition").split("|")[4]))
    assert set(windows.SERVER_EDITIONS) | set(windows.CLIENT_EDITIONS) <= editions
    known = _readme_row("winpe_drivers").split("Known:")[1]
    assert re.findall(r"\w+", known.split("|")[0]) == list(windows.VIRTIO_DRIVERS)



def test_every_edition_image_name_leads_back_to_its_release() -> None:
    # The simulated Setup finds the release (and its hardware checks) from the WIM name.
    for release in windows.RELEASES:
        editions = windows.SERVER_EDITIONS if release.server else windows.CLIENT_EDITIONS
        for edition in editions:
            name = windows.Edition(release.version, edition).image_name
            assert windows.release_of_image(name) == release, name
    assert windows.release_of_image("Windows Server 11 Pro") is None
    assert windows.release_of_image("Windows 2022 SERVERSTANDARD") is None
