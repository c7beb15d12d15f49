"""README's "Spec reference" tables say what the spec's schema says: keys, defaults, values.

Derived both ways: every key a table lists exists in the schema (with the default, the
allowed values and the bounds the row states), and every key of the schema is listed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from osbuild.durations import parse_duration
from osbuild.spec import BuildSpec, json_schema

README = Path(__file__).resolve().parents[1] / "README.md"
_CELL = re.compile(r"(?<!\\)\|")


def _reference() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Spec reference\n")
    return text[start:text.index("\n### What the guest media contain", start)]


def _tables() -> dict[str, list[list[str]]]:
    """Rows (cells) of each `### heading` table: "" for "Top level", else the section key."""
    tables: dict[str, list[list[str]]] = {}
    for chunk in _reference().split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        section = "" if heading == "Top level" else heading.strip("`")
        rows = [[cell.strip() for cell in _CELL.split(line)[1:-1]]
                for line in body.splitlines() if line.startswith("| `")]
        tables[section] = rows
    return tables


def _keys(cell: str) -> list[str]:
    return re.findall(r"`([a-z_0-9]+)`", cell)


def _schema_of(section: str) -> dict[str, Any]:
    schema = json_schema()
    if not section:
        return schema
    ref = schema["properties"][section]["$ref"]
    return schema["$defs"][ref.rsplit("/", 1)[1]]


def _model_of(section: str) -> type[BaseModel]:
    if not section:
        return BuildSpec
    model = BuildSpec.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model


def _is_nested(prop: dict[str, Any]) -> bool:
    refs = [prop, *prop.get("anyOf", [])]
    return any(each.get("$ref", "").endswith(("Spec", "StageTimeouts")) for each in refs)


def _rows() -> list[tuple[str, str, list[str]]]:
    return [(section, key, row) for section, rows in _tables().items()
            for row in rows for key in _keys(row[0])]


def test_the_reference_has_a_table_per_section_and_nothing_else() -> None:
    tables = _tables()
    sections = {name for name, prop in json_schema()["properties"].items()
                if _is_nested(prop) and name != "notify"}
    # `notify` has two keys, both explained in its top-level row (checked below).
    assert set(tables) == {"", *sections}


@pytest.mark.parametrize("section", sorted(_tables()))
def test_every_schema_key_is_in_its_table_and_every_listed_key_in_the_schema(
        section: str) -> None:
    listed = {key for row in _tables()[section] for key in _keys(row[0])}
    assert listed == set(_schema_of(section)["properties"])


def test_a_section_without_a_table_names_all_its_keys_in_its_row() -> None:
    schema = json_schema()
    top = {key: row for _, key, row in _rows() if _ == ""}
    for name in set(schema["properties"]) - set(_tables()):
        prop = schema["properties"][name]
        if not _is_nested(prop):
            continue
        ref = next(each["$ref"] for each in [prop, *prop.get("anyOf", [])] if "$ref" in each)
        keys = schema["$defs"][ref.rsplit("/", 1)[1]]["properties"]
        assert set(keys) <= set(_keys(" ".join(top[name]))), name


def _literal(cell: str) -> Any | None:
    """The value a default cell states as one code literal (`40`, `[a, b]`), else None."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    return None if match is None else match[1]


@pytest.mark.parametrize(("section", "key", "row"), _rows(),
                         ids=[f"{s or 'top'}.{k}" for s, k, _ in _rows()])
def test_each_row_states_the_schema_default_and_required(section: str, key: str,
                                                         row: list[str]) -> None:
    schema = _schema_of(section)
    field = _model_of(section).model_fields[key]
    type_cell, default_cell = row[1], row[2]
    required = key in schema.get("required", [])
    assert required == ("required" in f"{type_cell} {default_cell}"), (key, row)
    if required:
        return
    default = field.get_default(call_default_factory=True)
    stated = _literal(default_cell)
    if isinstance(default, BaseModel):
        return  # a whole section: its own table states its defaults
    if stated is None or stated in schema["properties"] or "." in stated:
        # prose ("none", "cloud default") or another key's value (`locale`, `builder.disk_gb`)
        assert default in (None, ()) or key == "metadata_services", (key, default_cell)
        return
    if "duration" in type_cell:
        assert parse_duration(stated) == default, (key, default_cell)
        return
    if isinstance(default, str):
        assert stated == default, (key, default_cell)
        return
    value = yaml.safe_load(stated)
    if isinstance(default, tuple):
        default = list(default)
    assert value == default, (key, default_cell)


@pytest.mark.parametrize(("section", "key", "row"), _rows(),
                         ids=[f"{s or 'top'}.{k}" for s, k, _ in _rows()])
def test_each_row_states_the_allowed_values_and_bounds(section: str, key: str,
                                                       row: list[str]) -> None:
    prop = _schema_of(section)["properties"][key]
    type_cell = row[1]
    if "enum" in prop:
        stated = set(re.findall(r"`([^`]+)`", type_cell))
        # Spellings YAML reads as another type (2022, no) are accepted as well.
        allowed = {str(value) for value in prop["enum"] if not isinstance(value, bool)}
        assert stated == allowed, (key, type_cell)
    bounds = re.fullmatch(r"(\d+) to (\d+)", type_cell)
    if "maximum" in prop or bounds:
        assert bounds is not None, (key, type_cell)
        assert (int(bounds[1]), int(bounds[2])) == (prop["minimum"], prop["maximum"])
    if type_cell == "bool":
        assert prop["type"] == "boolean", key


def _yaml_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(r"^```yaml\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def _sections(text: str) -> dict[str, list[str]]:
    """Top-level keys of spec text and their lines, as written (no YAML round trip)."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = sections.setdefault(line.split(":", 1)[0], [])
        current.append(line)
    return sections


def _with_minimal_spec(fragment: str) -> str:
    """A fragment's sections added to the minimal spec's, keeping the fragment's spelling."""
    from tests.media.helpers import MINIMAL_SPEC

    if "\nname:" in f"\n{fragment}":
        return fragment  # a whole spec
    merged = _sections(MINIMAL_SPEC)
    for key, lines in _sections(fragment).items():
        merged[key] = merged[key] + lines[1:] if key in merged else lines
    return "\n".join(line for lines in merged.values() for line in lines) + "\n"


@pytest.mark.parametrize("fragment", _yaml_blocks(),
                         ids=[block.split(":", 1)[0].strip("# ") for block in _yaml_blocks()])
def test_every_yaml_example_in_the_readme_validates_as_written(
        fragment: str, tmp_path: Path) -> None:
    from osbuild.spec import load_spec

    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    path = tmp_path / "spec.yaml"
    path.write_text(_with_minimal_spec(fragment), encoding="utf-8")
    load_spec(path)  # raises SpecError (or worse) when an example is wrong
