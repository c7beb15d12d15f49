"""Hostile values in every free-text spec field stay data in the XML, ini, JSON and scripts."""

from __future__ import annotations

import configparser
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from osbuild.errors import SpecError
from osbuild.media import layout
from osbuild.spec import load_spec

from . import pwsh
from .helpers import MINIMAL_SPEC, write_spec

NS = {"u": "urn:schemas-microsoft-com:unattend"}
HOSTILE = "<x> & ]]> \"dq\" 'sq' '; Remove-Item C:\\ -Recurse; ' caf\u00e9 \u65e5\u672c \U0001f600"
# Windows refuses some characters in account names; the rest of the hostile set remains.
HOSTILE_ACCOUNT = "&'q' caf\u00e9 $(x)`a"

# (YAML path, sample) for every free-text field of the spec.
FREE_TEXT_FIELDS = [
    (("windows", "iso_image"), HOSTILE),
    (("virtio", "iso_image"), HOSTILE),
    (("cloudbase_init", "username"), HOSTILE_ACCOUNT),
    (("cloudbase_init", "groups", 0), HOSTILE_ACCOUNT),
    (("cloudbase_init", "config", "hostile_option"), HOSTILE + " $HOME"),
    (("builder", "flavor"), HOSTILE),
    (("builder", "network"), HOSTILE),
    (("builder", "volume_type"), HOSTILE),
    (("builder", "availability_zone"), HOSTILE),
    (("image", "name"), HOSTILE),
    (("image", "tags", 0), HOSTILE),
    (("image", "properties", "note"), HOSTILE),
]


def _spec_with(tmp_path: Path, path: tuple, value: str):
    data = yaml.safe_load(MINIMAL_SPEC)
    node = data
    for part in path[:-1]:
        default: object = [] if isinstance(path[path.index(part) + 1], int) else {}
        node = node.setdefault(part, default)
    if isinstance(path[-1], int):
        node.append(value)
    else:
        node[path[-1]] = value
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return write_spec(tmp_path / "spec", text)


@pytest.mark.parametrize("path", [("windows", "locale"), ("windows", "input_locale"),
                                  ("windows", "timezone")], ids=lambda p: ".".join(p))
def test_hostile_value_in_a_windows_list_field_is_refused(tmp_path: Path, path: tuple) -> None:
    # Checked against Windows' own lists, these never reach the answer file.
    with pytest.raises(SpecError, match=".".join(path)):
        load_spec(_spec_with(tmp_path, path, HOSTILE))


@pytest.mark.parametrize(("path", "value"), FREE_TEXT_FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_hostile_value_stays_data(tmp_path: Path, render, path: tuple, value: str) -> None:
    spec = load_spec(_spec_with(tmp_path, path, value))
    media = render(spec)
    ET.parse(media.root / layout.ANSWER_FILE)  # well-formed
    for script in (media.root / layout.SCRIPTS_DIR).rglob("*.ps1"):
        tree = pwsh.parse(script.read_bytes())
        assert pwsh.problems(tree) == [], script.name
        if path == ("cloudbase_init", "username") and script.name == "firstlogon.ps1":
            values = [pwsh.verbatim_value(n) for n in pwsh.nodes(tree, "string_literal")]
            assert value in values
        commands = {(n.text or b"").decode() for n in pwsh.nodes(tree, "command_name")}
        # Only the stages that delete build leftovers on purpose call Remove-Item.
        assert "Remove-Item" not in commands or script.name in (
            "stage-cleanup.ps1", "stage-sysprep.ps1")
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(media.root / layout.CLOUDBASE_CONF, encoding="utf-8")
    defaults = {k: v.replace("$$", "$") for k, v in conf["DEFAULT"].items()}
    if path[:2] == ("cloudbase_init", "config"):
        assert defaults["hostile_option"] == value
        assert "$$HOME" in (media.root / layout.CLOUDBASE_CONF).read_text()
    if path == ("cloudbase_init", "username"):
        assert defaults["username"] == value
    if path[:2] == ("cloudbase_init", "groups"):
        assert defaults["groups"] == value
    json.loads((media.root / layout.PLAN_FILE).read_text())
    # fields for the cloud, not the guest, never reach the guest media
    if path[0] in ("builder", "image") or path[-1] == "iso_image":
        for file in media.root.rglob("*"):
            if file.is_file():
                assert value.encode() not in file.read_bytes(), file.name


@pytest.mark.parametrize(("path", "_value"), FREE_TEXT_FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_multi_line_values_are_refused_naming_the_field(tmp_path: Path, path, _value) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_spec_with(tmp_path, path, "first line\nRemove-Item C:\\ -Recurse"))
    dotted = ".".join(p if isinstance(p, str) else "" for p in path).replace("..", ".")
    message = "\n".join(info.value.lines())
    assert dotted.split(".")[0] in message
    assert str(path[1]) in message


def test_hostile_msi_url_stays_data_in_the_plan(tmp_path: Path, render) -> None:
    url = "https://example.org/a'b\"c<d>&e;Remove-Item.msi"
    data = yaml.safe_load(MINIMAL_SPEC)
    data["cloudbase_init"] = {"msi": url, "sha256": "ab" * 32}
    media = render(load_spec(write_spec(tmp_path / "spec", yaml.safe_dump(data))))
    plan = json.loads((media.root / layout.PLAN_FILE).read_text())
    assert plan["cloudbase_init"]["url"] == url
    for script in (media.root / layout.SCRIPTS_DIR).rglob("*.ps1"):
        assert url.encode() not in script.read_bytes()


def test_hostile_script_file_name_is_sanitised(tmp_path: Path, render) -> None:
    name = "'; Remove-Item C:\\ -Recurse; '<&>.ps1"
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / name).write_text("Write-Host 'user script'\n")
    quoted = name.replace("'", "''")
    path = write_spec(spec_dir, MINIMAL_SPEC + f"scripts:\n  - '{quoted}'\n")
    media = render(load_spec(path))
    (iso_path,) = media.plan.scripts
    assert iso_path.startswith(layout.USER_SCRIPTS_DIR + "/01-")
    assert all(ch.isalnum() or ch in "/._-" for ch in iso_path)
    assert (media.root / iso_path).read_text(encoding="utf-8-sig") == "Write-Host 'user script'\n"
