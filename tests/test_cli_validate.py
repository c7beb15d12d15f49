"""`osbuild validate` (exit 0 / 2) and `osbuild schema` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from osbuild import resources
from osbuild.cli import main
from osbuild.errors import EXIT_INVALID_INPUT

EXAMPLES = sorted(resources.examples_dir().glob("*.yaml"))


@pytest.fixture
def examples(tmp_path: Path) -> list[Path]:
    for example in EXAMPLES:
        shutil.copy(example, tmp_path / example.name)
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    return [tmp_path / e.name for e in EXAMPLES]


def test_validate_examples_exit_0(examples: list[Path], capsys) -> None:
    assert main(["validate", *map(str, examples)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(examples)
    assert "Windows Server 2022 SERVERSTANDARD" in out


def test_validate_invalid_exits_2_listing_every_problem(examples: list[Path], capsys) -> None:
    bad = examples[0].with_name("bad.yaml")
    bad.write_text(examples[0].read_text().replace("flavor:", "flavour:"))
    (examples[0].parent / "CloudbaseInitSetup_x64.msi").unlink()
    assert main(["validate", str(bad), str(examples[1])]) == EXIT_INVALID_INPUT
    err = capsys.readouterr().err.splitlines()
    assert any(f"{bad}: line" in line and "builder.flavour: unknown key" in line for line in err)
    assert any(f"{bad}: line" in line and "builder.flavor: required" in line for line in err)
    assert any(str(examples[1]) in line and "file not found" in line for line in err)
    assert all(line.startswith("osbuild: error: ") for line in err)


def test_validate_missing_file_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == EXIT_INVALID_INPUT
    assert "cannot read spec" in capsys.readouterr().err


def test_validate_needs_a_spec(capsys) -> None:
    assert main(["validate"]) == 2
    assert "SPEC" in capsys.readouterr().err


def test_schema_is_json_schema(capsys) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "osbuild build spec"
    assert "windows" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_console_script_entry_point(examples: list[Path]) -> None:
    # the installed module entry point, as a user runs it
    result = subprocess.run(
        [sys.executable, "-m", "osbuild", "validate", str(examples[0])],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ": ok (" in result.stdout


def test_validate_rejects_an_image_name_promote_could_not_format(
        examples: list[Path], capsys) -> None:
    example = next(e for e in examples if e.name == "ws2022-standard.yaml")
    bad = example.with_name("bad-name.yaml")
    text = example.read_text()
    bad.write_text(text.replace('name: "ws2022-std-{date}"', 'name: "{name"'))
    assert bad.read_text() != text
    assert main(["validate", str(bad)]) == EXIT_INVALID_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert "image.name: '{' without '}'" in line and line.startswith("osbuild: error: ")
