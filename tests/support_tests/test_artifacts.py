"""Every tier keeps its artifacts under one root, each kind in its own folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.artifacts import ARTIFACTS_ENV, artifacts_dir
from tests.support.processes import REPO_ROOT


def test_the_root_comes_from_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path / "ci-upload"))
    assert artifacts_dir("hypervisor") == tmp_path / "ci-upload" / "hypervisor"
    assert artifacts_dir("report").is_dir()


def test_the_default_root_is_the_ignored_folder_of_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    assert artifacts_dir("report") == REPO_ROOT / ".artifacts" / "report"
    assert ".artifacts/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
