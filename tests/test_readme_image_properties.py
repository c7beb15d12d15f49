"""README's "Image properties Nova reads" table says what a published image carries.

Derived both ways from :func:`osbuild.pipeline.hardware.hardware_properties`: every row's
property and value is what a spec with the row's setting gets, an "always" row is on every
image and a conditional one only with its setting, and every property it sets is a row.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from osbuild.pipeline.hardware import hardware_properties
from osbuild.resources import examples_dir
from osbuild.spec import BuildSpec, load_spec
from osbuild_sim.media import cloudbase_msi_standin

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows() -> dict[str, tuple[str, str]]:
    """property -> (value cell, set-when cell)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n### Image properties Nova reads\n")
    end = text.index("\n#", start + 1)
    rows = {}
    for line in text[start:end].splitlines():
        if line.startswith("| `"):
            name, value, when = (cell.strip() for cell in line.strip("|").split("|"))
            rows[name.strip("`")] = (value, when)
    return rows


def _spec(tmp_path: Path, name: str, **changes: dict[str, Any]) -> BuildSpec:
    data = yaml.safe_load((examples_dir() / "ws2022-standard.yaml").read_text())
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    # The examples name a local MSI, not in the repository (a clean clone has none).
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def _properties(spec: BuildSpec) -> dict[str, str]:
    return hardware_properties(SimpleNamespace(spec=spec))  # type: ignore[arg-type]


def test_the_table_names_what_each_setting_adds(tmp_path: Path) -> None:
    rows = _rows()
    # Every setting a row names off (qemu_ga is on by default).
    plain = _properties(_spec(tmp_path, "plain", virtio={"qemu_ga": False}))
    everything = _spec(tmp_path, "all", windows={"firmware": "uefi", "secure_boot": True,
                                                 "tpm": True},
                       builder={"disk_bus": "scsi"},
                       virtio={"winpe_drivers": ["vioscsi", "NetKVM"], "qemu_ga": True})
    full = _properties(everything)
    assert set(rows) == set(full), "the table and hardware_properties() list other keys"
    always = {name for name, (_value, when) in rows.items() if when == "always"}
    assert always == set(plain), "an 'always' row is missing from a plain spec's image"
    for name, (value, when) in rows.items():
        literal = re.fullmatch(r"`([^`]+)`", value)
        if literal:
            assert full[name] == literal.group(1), (name, value)
        else:
            # `section.key` (...): the spec's own value.
            section, key = re.match(r"`([a-z_]+)\.([a-z_]+)`", value).groups()  # type: ignore[union-attr]
            assert full[name] == str(getattr(getattr(everything, section), key)), name
        if when != "always":
            setting = re.match(r"`([a-z_]+)\.([a-z_]+)", when).groups()  # type: ignore[union-attr]
            assert name not in plain, (name, setting)
