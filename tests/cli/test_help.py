"""What the README tells operators to type is what `--help` documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuild.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    assert main([*command, "--help"]) == 0
    return capsys.readouterr().out


def _readme_flags() -> set[tuple[str, str]]:
    """(sub-command, --flag) for every flag the README's command lines pass to osbuild."""
    text = README.read_text().replace("\\\n", " ")
    found = set()
    for line in text.splitlines():
        for match in re.finditer(r"\bosbuild (build|resume|gc|images|sim serve|demo|render"
                                 r"|report|status)\b([^`|;&]*)", line):
            found.update((match[1], flag) for flag in re.findall(r"--[a-z][a-z-]+", match[2]))
    return found


def test_the_readme_uses_time_scale_and_help_shows_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert ("build", "--time-scale") in _readme_flags()
    for command in ("build", "resume", "gc", "images"):
        out = _help(capsys, command)
        assert "--time-scale FACTOR" in out
        assert "simulated cloud" in out


@pytest.mark.parametrize(("command", "flag"), sorted(_readme_flags()))
def test_every_flag_the_readme_passes_is_in_help(capsys: pytest.CaptureFixture[str],
                                                 command: str, flag: str) -> None:
    assert flag in _help(capsys, *command.split())


def test_time_scale_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "x.yaml", "--time-scale", "0"]) == 2
    assert "--time-scale: must be positive" in capsys.readouterr().err


# Every sub-command an operator runs (`osbuild images` alone is `images list`).
COMMANDS = ["build", "resume", "demo", "validate", "render", "schema", "media prepare-uefi",
            "media inspect", "images list", "images prune", "images promote", "images rollback",
            "images verify", "gc", "report", "status", "sim serve"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_in_help_is_in_the_readme(capsys: pytest.CaptureFixture[str],
                                               command: str) -> None:
    # The other direction: an option only --help knows of (render's --build-id, sim serve's
    # --application-credential, prepare-uefi's cloud mode were) is one no reader finds.
    readme = README.read_text()
    options = set(re.findall(r"--[a-z][a-z-]+", _help(capsys, *command.split()))) - {"--help"}
    assert sorted(flag for flag in options if flag not in readme) == []
