"""Shared fixtures for the whole suite."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build state, locks and logs of every test, in every tier, go to a temporary folder.

    Session-scoped so that it is in place before any module- or session-scoped fixture
    starts a build; a test that wants its own folder still sets XDG_STATE_HOME itself.
    """
    state_home = tmp_path_factory.mktemp("xdg-state-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(state_home))
        yield state_home


@pytest.fixture
def sim() -> Iterator[Any]:
    """A simulated cloud at real-time speed: tests move its clock with `sim.advance(s)`."""
    from osbuild_sim import SimCloud

    with SimCloud(speed=1.0) as cloud:
        yield cloud


@pytest.fixture
def fast_sim() -> Iterator[Any]:
    """A simulated cloud at demo speed (600x), for flows that wait on real status changes."""
    from osbuild_sim import SimCloud
    from tests.e2e.conftest import WORK_PACE

    with SimCloud(speed=600.0, work_pace=WORK_PACE) as cloud:
        yield cloud


@pytest.fixture
def conn(sim: Any) -> Any:
    """An unmodified openstacksdk Connection to the `sim` cloud."""
    return sim.connect()


# ------------------------------------------------------------------ every test file runs
# pytest silently skips some folders (any folder named `build`, for one): 19 tests once never
# ran. When the whole suite is asked for (the README's `python -m pytest`), every test_*.py
# under tests/ must have been collected, or the run fails.

_TESTS_DIR = Path(__file__).resolve().parent
_collected_files: set[Path] = set()


def _whole_suite(config: pytest.Config) -> bool:
    if config.getoption("markexpr", "") or config.getoption("keyword", ""):
        return False  # a narrowed run (-m "not slow", -k ...) leaves files out on purpose
    args = [Path(a.split("::", 1)[0]).resolve() for a in config.args]
    return any(a in (_TESTS_DIR, _TESTS_DIR.parent) for a in args)


_FUNCTIONAL_DIR = _TESTS_DIR / "functional"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: record before -m/-k deselect anything.
    _collected_files.update(Path(str(item.path)).resolve() for item in items)
    for item in items:
        # The functional tier starts real services: never part of the `-m "not slow"` loop.
        if _FUNCTIONAL_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    # Under xdist the controller collects nothing itself: each worker reports its node ids.
    root = _TESTS_DIR.parent
    _collected_files.update((root / nodeid.split("::", 1)[0]).resolve() for nodeid in ids)


def uncollected_test_files(collected: set[Path]) -> list[Path]:
    return sorted(p for p in _TESTS_DIR.rglob("test_*.py")
                  if p.resolve() not in collected and "__pycache__" not in p.parts)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if (hasattr(config, "workerinput") or not _whole_suite(config)
            or config.getoption("collectonly", False)):
        return
    missing = uncollected_test_files(_collected_files)
    if missing:
        names = ", ".join(str(p.relative_to(_TESTS_DIR.parent)) for p in missing)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"ERROR: test files not collected by this run: {names}",
                                red=True, bold=True)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
