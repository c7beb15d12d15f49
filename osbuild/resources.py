"""Where the files that ship with osbuild (templates, example specs) are found."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE_DIR.parent


def _find(installed: str, source: str) -> Path:
    # A wheel carries the files under osbuild/_data/; a source checkout (and an editable
    # install) has them at the top of the repository.
    for candidate in (_PACKAGE_DIR / "_data" / installed, _SOURCE_ROOT / source):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"osbuild's {source} directory is missing from this installation")


def templates_dir() -> Path:
    return _find("templates", "templates")


def examples_dir() -> Path:
    return _find("builds", "etc/builds")
