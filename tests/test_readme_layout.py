"""The README's layout section names what is in the tree, and only that."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_entries() -> list[Path]:
    """Paths in the README's `### Layout` block; an indented name is inside the one above."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^### Layout\n\n```\n(.*?)^```", text, re.S | re.M)
    assert block, "README.md has no '### Layout' code block"
    entries: list[Path] = []
    parent = ROOT
    for line in block.group(1).splitlines():
        names = re.split(r"\s{2,}", line.strip())[0].split()
        indented = line.startswith(" ")
        for name in names:
            path = (parent if indented else ROOT) / name.rstrip("/")
            entries.append(path)
            if not indented:
                parent = path
    return entries


def test_every_path_in_the_layout_exists() -> None:
    missing = [str(p.relative_to(ROOT)) for p in layout_entries() if not p.exists()]
    assert not missing, f"README layout names paths that do not exist: {missing}"


def test_every_package_and_shipped_folder_is_in_the_layout() -> None:
    listed = set(layout_entries())
    sdist = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["sdist"]["include"]
    expected = {ROOT / name for name in sdist if (ROOT / name).is_dir()}
    expected |= {p.parent for p in ROOT.glob("*/__init__.py")}
    product = ROOT / "osbuild"
    expected |= {p.parent for p in product.glob("*/__init__.py")}
    expected |= {p for p in product.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    missing = sorted(str(p.relative_to(ROOT)) for p in expected - listed)
    assert not missing, f"README layout leaves out: {missing}"
