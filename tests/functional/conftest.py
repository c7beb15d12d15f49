"""Fixtures for the functional tier: one real Keystone + Glance (+ Cinder) per session.

Every test under tests/functional is marked ``functional`` and skipped, with the reason,
when the ``functional`` extra is not installed, or when no ``-m`` expression selects the tier
(the main suite's ``python -m pytest``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osbuild_sim import upstream_schemas
from tests.support.realbuilds import remember_baseline
from tests.support.realcinder import RealCinder
from tests.support.realservices import ProjectUser, RealServices, missing_requirements
from tests.support.realstack import RealStack, missing_cinder

_REPORTS: list[str] = []

_HERE = Path(__file__).parent


# The main suite (`python -m pytest`) is the simulated cloud's; this tier runs on its own
# (`python -m tox -e functional`, or any `-m` expression that selects it), not twice.
_OWN_TIER = "the functional tier: run it with python -m tox -e functional (or -m functional)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_requirements() or (None if config.getoption("markexpr", "") else _OWN_TIER)
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.functional)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def real_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServices]:
    with RealServices(tmp_path_factory.mktemp("real-services")) as rs:
        yield rs


@pytest.fixture(scope="module")
def real_cinder(real_services: RealServices) -> Iterator[RealCinder]:
    """Real Cinder (API, scheduler, volume; one process) behind the session's Keystone
    and Glance, with file-backed volumes.

    Per module (about 6 s to start): while it runs it is the catalog's ``block-storage``,
    and the attached-simulator tests register the simulator's under the same type.
    """
    with RealCinder(real_services) as cinder:
        yield cinder


@pytest.fixture(scope="session")
def schema_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache of upstream schemas, so the tier also proves the extraction works."""
    path = tmp_path_factory.mktemp("upstream-schemas")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OSBUILD_SCHEMA_CACHE", str(path))
        upstream_schemas.reset()
        yield path
    upstream_schemas.reset()


@pytest.fixture(scope="module")
def real_stack(
    real_services: RealServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealStack]:
    """Real Cinder and Nova (plus the network) on top of ``real_services``, seeded with the
    simulator's stand-in media; see :mod:`tests.support.realstack`. Per module: the
    attached simulator registers its own compute, block-storage and network in the same
    catalog, so the two must never be up together."""
    reason = missing_cinder()
    if reason:
        pytest.skip(f"real Cinder is not available: {reason}")
    with RealStack(real_services, tmp_path_factory.mktemp("real-stack")) as stack:
        _REPORTS.append(stack.report())
        yield stack
        _REPORTS.append(stack.report().replace("real stack:", "real stack at the end:"))


# The build tests' fixtures on the real stack.
@pytest.fixture(scope="module")
def builder(real_stack: RealStack, request: pytest.FixtureRequest) -> ProjectUser:
    """The module's own project and user, named after it (test_real_nova.py: ``nova-builds``,
    ``nova-builder``): each module's builds and leftovers stay apart."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").removeprefix("real_")
    return real_stack.rs.create_project_user(f"{name}-builds", f"{name}-builder")


@pytest.fixture
def baseline(real_stack: RealStack) -> frozenset[str]:
    """What exists before the test, which :func:`tests.support.realbuilds.finish` ignores; a
    build module uses it in every test (``pytest.mark.usefixtures("baseline")``)."""
    return remember_baseline(real_stack)


@pytest.fixture
def user_conn(real_stack: RealStack, builder: ProjectUser) -> Any:
    return real_stack.connect(builder)


@pytest.fixture
def guests(real_stack: RealStack) -> Iterator[Any]:
    """The real Nova, to steer its guests (``guests.set_guest_scenario("*-builder", ...)``,
    ``guests.set_speed(...)``); scenarios and pace are reset afterwards."""
    assert real_stack.nova is not None
    yield real_stack.nova
    real_stack.nova.clear_guest_scenarios()
    real_stack.nova.set_speed(real_stack.speed)


@pytest.fixture
def clouds_yaml(
    real_stack: RealStack, builder: ProjectUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    path = real_stack.write_clouds_yaml(tmp_path / "clouds.yaml", builder)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _REPORTS:
        terminalreporter.write_line(line)
