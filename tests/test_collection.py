"""The suite refuses to pass when a test file was silently left out of collection."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

CONFTEST = Path(__file__).with_name("conftest.py")


def _tree(tmp_path: Path) -> Path:
    tests = tmp_path / "tests"
    (tests / "build").mkdir(parents=True)
    shutil.copy(CONFTEST, tests / "conftest.py")
    (tests / "test_seen.py").write_text("def test_seen():\n    assert True\n")
    return tests


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_test_file_in_a_build_folder_fails_the_whole_suite(tmp_path: Path,
                                                             workers: str) -> None:
    tests = _tree(tmp_path)
    (tests / "build" / "test_hidden.py").write_text("def test_hidden():\n    assert True\n")
    result = _pytest(tmp_path, "-n", workers, "tests")
    assert result.returncode != 0
    assert "test files not collected by this run: tests/build/test_hidden.py" in (
        result.stdout + result.stderr)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_fully_collected_suite_passes(tmp_path: Path, workers: str) -> None:
    _tree(tmp_path)
    result = _pytest(tmp_path, "-n", workers, "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_partial_run_is_not_checked(tmp_path: Path) -> None:
    tests = _tree(tmp_path)
    (tests / "build" / "test_hidden.py").write_text("def test_hidden():\n    assert True\n")
    result = _pytest(tmp_path, "tests/test_seen.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_run_narrowed_by_marker_is_not_checked(tmp_path: Path) -> None:
    tests = _tree(tmp_path)
    (tests / "test_other.py").write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_other():\n    assert True\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    result = _pytest(tmp_path, "-n", "2", "-m", "not slow", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
