"""What the README tells operators to type is what `--help` documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuild.cli import build_parser, main
from tests.cli.test_readme_commands import subparsers

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands() -> list[str]:
    """Every sub-command an operator runs, from the parser: `media inspect`, not `media`."""
    return [f"{name} {action}".strip()
            for name, parser in subparsers(build_parser()).items()
            for action in (subparsers(parser) or [""])]


# A new command or action is checked without anyone adding it here.
COMMANDS = _commands()


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    assert main([*command, "--help"]) == 0
    return capsys.readouterr().out


def _readme_flags() -> set[tuple[str, str]]:
    """(sub-command, --flag) for every flag the README's command lines pass to osbuild."""
    text = README.read_text().replace("\\\n", " ")
    # Longest first: `images prune --keep` is prune's flag; `images --json` is list's.
    names = sorted({*COMMANDS, *(command.split()[0] for command in COMMANDS)},
                   key=len, reverse=True)
    pattern = re.compile(rf"\bosbuild ({'|'.join(map(re.escape, names))})\b([^`|;&]*)")
    found = set()
    for line in text.splitlines():
        for match in pattern.finditer(line):
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


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_in_help_is_in_the_readme(capsys: pytest.CaptureFixture[str],
                                               command: str) -> None:
    # The other direction: an option only --help knows of (render's --build-id, sim serve's
    # --application-credential, prepare-uefi's cloud mode were) is one no reader finds.
    readme = README.read_text()
    options = set(re.findall(r"--[a-z][a-z-]+", _help(capsys, *command.split()))) - {"--help"}
    assert sorted(flag for flag in options if flag not in readme) == []
