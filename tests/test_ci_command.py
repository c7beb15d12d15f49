"""CI (.ci/run) runs exactly the README's test command, one tier per part."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"^Run the test suite .*?```sh\n(.*?)\n```", text, re.S | re.M)
    assert found, "README.md has no 'Run the test suite' command"
    return found.group(1).strip()


def test_ci_runs_each_part_of_the_readme_test_command_in_order() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    parts = [shlex.split(part) for part in readme_test_command().split(" && ")]
    # `tier NAME COMMAND...` at the start of a line (the system-packages tier is indented)
    tiers = [shlex.split(line)[2:] for line in script.splitlines() if line.startswith("tier ")]
    assert tiers == parts
    assert f"#   {readme_test_command()}\n" in script
