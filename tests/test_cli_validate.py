"""`osbuild validate` (exit 0 / 2) and `osbuild schema` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

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
    assert any(str(examples[1]) in line and "file not found" in line for line in err)
    assert all(line.startswith("osbuild: error: ") for line in err)


def test_validate_keeps_the_ok_lines_of_good_specs_when_another_fails(
        examples: list[Path], capsys) -> None:
    bad = examples[0].with_name("bad.yaml")
    bad.write_text(examples[0].read_text().replace("edition:", "editon:"))
    assert main(["validate", str(examples[0]), str(bad), str(examples[1])]) == EXIT_INVALID_INPUT
    captured = capsys.readouterr()
    assert captured.out.count(": ok (") == 2
    assert f"{examples[0].resolve()}: ok (" in captured.out
    assert f"{examples[1].resolve()}: ok (" in captured.out
    assert str(bad) in captured.err and str(bad) not in captured.out



def test_validate_json_is_one_object_with_the_good_specs_and_every_problem(
        examples: list[Path], capsys) -> None:
    bad = examples[0].with_name("bad.yaml")
    bad.write_text(examples[0].read_text().replace("edition:", "editon:"))
    assert main(["validate", "--json", str(examples[0]), str(bad)]) == EXIT_INVALID_INPUT
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()
    result = json.loads(line)
    assert result["valid"] is False
    assert [ok["spec"] for ok in result["ok"]] == [str(examples[0].resolve())]
    assert result["ok"][0]["image_name"].startswith("Windows ")
    [problem] = result["problems"]
    assert str(bad) in problem and "windows.editon: unknown key" in problem
    assert captured.err == ""  # the JSON document alone
    assert main(["validate", "--json", str(examples[0])]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  edition:", "  editon:", "windows.editon: unknown key (did you mean edition?)\n"),
    ("  enabled:", "  enabeld:", "updates.enabeld: unknown key (did you mean enabled?)\n"),
    ("\nimage:", "\nimgae:", ": imgae: unknown key (did you mean image?)\n"),
    ("  flavor:", "  zzzzzz:", "builder.zzzzzz: unknown key\n"),  # nothing close: no guess
])
def test_an_unknown_key_suggests_the_nearest_known_one(
        examples: list[Path], capsys, old: str, new: str, expected: str) -> None:
    spec = examples[0]
    spec.write_text(spec.read_text().replace(old, new, 1))
    assert main(["validate", str(spec)]) == EXIT_INVALID_INPUT
    assert expected in capsys.readouterr().err


def test_a_misspelt_required_key_is_one_problem_on_one_line(examples: list[Path], capsys) -> None:
    # `flavour:` for `flavor:`: the line naming the key meant says it all; a second line
    # calling `builder.flavor` missing would count one slip as two problems.
    spec = examples[0]
    spec.write_text(spec.read_text().replace("  flavor:", "  flavour:", 1))
    assert main(["validate", str(spec)]) == EXIT_INVALID_INPUT
    err = capsys.readouterr().err.splitlines()
    assert err == [f"osbuild: error: {spec}: line {_line_of(spec, 'flavour:')}: "
                   "builder.flavour: unknown key (did you mean flavor?)"]


def test_a_missing_required_key_without_a_near_miss_is_still_reported(
        examples: list[Path], capsys) -> None:
    spec = examples[0]
    spec.write_text(spec.read_text().replace("  flavor:", "  zzzzzz:", 1))
    assert main(["validate", str(spec)]) == EXIT_INVALID_INPUT
    err = capsys.readouterr().err
    assert "builder.zzzzzz: unknown key\n" in err and "builder.flavor: required" in err


def test_a_product_key_of_the_wrong_shape_says_which_shape_is_right(
        examples: list[Path], capsys) -> None:
    # The hint used to show the form as XXXXX-XXXXX-XXXXX-XXXXX-XXXXX, which the CLI's
    # redaction (anything shaped like a key) printed as "[redacted]".
    spec = examples[0]
    spec.write_text(spec.read_text().replace("product_key: kms", "product_key: ABCDE-12345", 1))
    assert main(["validate", str(spec)]) == EXIT_INVALID_INPUT
    [line] = capsys.readouterr().err.splitlines()
    assert "windows.product_key: must be `kms` or a product key: 5 groups of 5" in line
    assert "[redacted]" not in line and "ABCDE-12345" not in line


def _line_of(spec: Path, text: str) -> int:
    return next(n for n, line in enumerate(spec.read_text().splitlines(), 1) if text in line)


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


def _published_schema(capsys) -> Any:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def _shipped_specs() -> dict[str, str]:
    """etc/builds/*.yaml and the specs in the Kubernetes example's ConfigMap."""
    specs = {e.name: e.read_text() for e in EXAMPLES}
    kubernetes = resources.examples_dir().parent / "kubernetes" / "cronjob.yaml"
    if kubernetes.is_file():
        for doc in yaml.safe_load_all(kubernetes.read_text()):
            if doc and doc.get("kind") == "ConfigMap":
                specs.update({f"kubernetes/{name}": text
                              for name, text in (doc.get("data") or {}).items()})
    return specs


SHIPPED = _shipped_specs()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_example_validates_against_the_published_schema(
        name: str, capsys) -> None:
    spec = yaml.safe_load(SHIPPED[name])
    problems = [f"{'.'.join(map(str, e.path))}: {e.message}"
                for e in _published_schema(capsys).iter_errors(spec)]
    assert problems == []


# What `validate` accepts, written the ways the README allows.
ACCEPTED = {
    "duration as text": "builder:\n  flavor: m1.large\n  timeout: 1h30m\n",
    "duration in seconds": "builder:\n  flavor: m1.large\n  timeout: 5400\n",
    "stage timeouts": "builder:\n  flavor: m1.large\n  stage_timeouts: {winpe: 2h, boot: 600}\n",
    "verify timeout": "verify:\n  timeout: 45m\n",
    "max age": "image:\n  name: \"test-{date}\"\n  max_age: 90d\n",
    "version as a number": "windows:\n  version: 2022\n",
    # YAML 1.1 reads an unquoted `no` (the README's spelling) as false.
    "first logon behaviour unquoted": "cloudbase_init:\n  first_logon_behaviour: no\n",
}


@pytest.mark.parametrize("change", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_schema_accepts_what_validate_accepts(tmp_path: Path, capsys, change: str) -> None:
    from tests.media.helpers import MINIMAL_SPEC

    data = yaml.safe_load(MINIMAL_SPEC)
    for section, values in yaml.safe_load(change).items():
        data[section] = {**data.get(section, {}), **values}
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    problems = [f"{'.'.join(map(str, e.path))}: {e.message}"
                for e in _published_schema(capsys).iter_errors(data)]
    assert problems == []


def test_the_schema_refuses_a_duration_validate_refuses(capsys) -> None:
    from tests.media.helpers import MINIMAL_SPEC

    data = yaml.safe_load(MINIMAL_SPEC)
    data["builder"]["timeout"] = "soon"
    assert list(_published_schema(capsys).iter_errors(data))


def test_a_refresh_choice_is_checked_against_the_cloud(
        examples: list[Path], capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline, `--refresh auto` was ignored without a word: exit 0 and no choice shown
    # (found from outside, session 30). The choice needs the family's current image.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "none.yaml"))
    for var in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["validate", str(examples[0])]) == 0
    capsys.readouterr()
    assert main(["validate", str(examples[0]), "--refresh", "auto"]) == EXIT_INVALID_INPUT
    assert "OS_CLIENT_CONFIG_FILE names" in capsys.readouterr().err  # it went for the cloud


def test_ok_and_problem_lines_name_a_spec_as_typed(
        examples: list[Path], capsys, monkeypatch) -> None:
    # An outside tryout read "/tmp/x/00-base.yaml: ok" beside "01-typo.yaml: line 22: ...".
    monkeypatch.chdir(examples[0].parent)
    bad = examples[0].with_name("bad.yaml")
    bad.write_text(examples[0].read_text().replace("edition:", "editon:"))
    assert main(["validate", examples[0].name, "bad.yaml"]) == EXIT_INVALID_INPUT
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{examples[0].name}: ok (")
    assert captured.err.startswith("osbuild: error: bad.yaml: line ")
