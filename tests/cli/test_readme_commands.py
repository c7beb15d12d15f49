"""README's command table and usage blocks against the real parser: every command and
action exists, each flag belongs to the command it is written after, a flag written as
repeatable repeats, and `a|b|c` values are the flag's choices."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from osbuild.cli import COMMANDS, build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _table_usages() -> list[str]:
    """The command cells of README's `## Commands` table."""
    rows = [line for line in _section("## Commands").splitlines()
            if line.startswith("| `osbuild ")]
    assert rows, "README has no command table"
    cells = [re.split(r"(?<!\\)\|", row)[1] for row in rows]
    return [span.replace("\\|", "|") for cell in cells for span in re.findall(r"`([^`]+)`", cell)]


def _block_usages() -> list[str]:
    """Usage lines in README's plain and console code blocks (continuation lines joined)."""
    usages: list[str] = []
    block: list[str] = []
    fence: str | None = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if fence is None:
                fence, block = line[3:], []
                continue
            if fence in ("", "console"):
                joined = re.sub(r"\n\s+\[", " [", "\n".join(block))
                usages += [each.split("#")[0].strip() for each in joined.splitlines()
                           if each.startswith("osbuild ") and "[" in each]
            fence = None
        elif fence is not None:
            block.append(line)
    return usages


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _parsers_of(usage: str) -> tuple[list[argparse.ArgumentParser], str]:
    """The parsers a usage names (`images prune|promote` names two) and the rest of it."""
    words = usage.removeprefix("osbuild ").split(" ", 1)
    name, rest = words[0], (words[1] if len(words) > 1 else "")
    commands = subparsers(build_parser())
    assert name in commands, f"{usage}: no command {name!r}"
    parser = commands[name]
    actions = subparsers(parser)
    if not actions:
        return [parser], rest
    first, _, after = rest.partition(" ")
    optional = first.startswith("[") and first.endswith("]")
    wanted = first.strip("[]").split("|")
    if not set(wanted) <= set(actions):
        assert "list" in actions, f"{usage}: names no action of {sorted(actions)}"
        return [actions["list"]], rest  # `images SPEC`: list is the default action
    assert optional == ("list" in wanted), usage  # only the default action may be omitted
    return [actions[each] for each in wanted], after


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


USAGES = sorted(set(_table_usages() + _block_usages()))


def test_the_table_has_a_row_for_every_command() -> None:
    named = {usage.removeprefix("osbuild ").split()[0] for usage in _table_usages()}
    assert named == set(COMMANDS)


def test_the_unattended_and_gc_usage_blocks_are_checked() -> None:
    # The blocks below the table are part of the contract too; make sure they are found.
    assert any(u.startswith("osbuild build [--state-dir") for u in USAGES)
    assert any(u.startswith("osbuild resume BUILD_ID") for u in USAGES)
    assert any(u.startswith("osbuild gc [--older-than") for u in USAGES)
    assert any(u.startswith("osbuild images prune") for u in USAGES)


@pytest.mark.parametrize("usage", USAGES)
def test_each_usage_names_real_flags_of_its_command(usage: str) -> None:
    parsers, rest = _parsers_of(usage)
    for parser in parsers:
        options = _options(parser)
        for match in re.finditer(r"(?<![\w-])(--[a-z][a-z-]*|-o)(?= )", rest + " "):
            flag = match[1]
            assert flag in options, f"{usage}: {parser.prog} has no {flag}"
            action = options[flag]
            # What follows the flag, up to the next option: its value, `]`, `...`.
            after = re.split(r" \[| --", rest[match.end():] + " ", maxsplit=1)[0]
            values = re.fullmatch(r" ([a-z0-9]+(?:\|[a-z0-9]+)+)\]?(?:\.\.\.)? ?", after)
            if values:
                assert set(values[1].split("|")) == set(action.choices or ()), flag
            if after.rstrip().endswith(("]...", " ...]")):
                assert isinstance(action, argparse._AppendAction), f"{usage}: {flag} repeats"


def test_documented_defaults_are_the_parser_defaults() -> None:
    # "gc [--older-than 6h]", "--wait-lock [DURATION]: 6h if you give no value",
    # "--refresh ...: the default is never".
    commands = subparsers(build_parser())
    assert _options(commands["gc"])["--older-than"].default == 6 * 3600
    assert _options(commands["build"])["--wait-lock"].const == 6 * 3600
    assert _options(commands["build"])["--refresh"].default == "never"
    flags = _section("## Running from cron")
    assert "(6h if you give no value)" in flags and "The default is `never`." in flags
