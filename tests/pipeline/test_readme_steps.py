"""README's "How a build runs" lists the build's steps by name, in the order they run."""

from __future__ import annotations

import re
from pathlib import Path

from osbuild.pipeline.run import build_steps, refresh_steps

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## How a build runs\n")
    return text[start:text.index("\n### ", start)]


def test_the_numbered_list_is_the_build_step_list() -> None:
    listed = re.findall(r"^\d+\. \*\*([a-z-]+)\*\*", _section(), re.MULTILINE)
    assert listed == [step.name for step in build_steps()]


def test_the_refresh_paragraph_names_only_steps_a_refresh_has() -> None:
    paragraph = _section().split("\nA refresh (", 1)[1]
    named = set(re.findall(r"\*\*([a-z-]+)\*\*", paragraph))
    assert named and named <= {step.name for step in refresh_steps()}
