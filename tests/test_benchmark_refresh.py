"""benchmarks/refresh.py's summary statistics (the script itself runs builds for minutes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "refresh.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_refresh", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_interval_is_a_point_when_every_pair_has_the_same_share(bench: ModuleType) -> None:
    low, high = bench._bootstrap_interval([40.0, 80.0, 120.0], [100.0, 200.0, 300.0])
    assert low == pytest.approx(0.4) and high == pytest.approx(0.4)


def test_the_interval_holds_the_share_and_stays_within_the_pairs(bench: ModuleType) -> None:
    refresh = [2600.0, 2700.0, 2650.0, 2800.0, 2550.0, 2750.0]
    full = [5600.0, 8000.0, 6400.0, 7500.0, 5900.0, 6900.0]
    share = sum(refresh) / sum(full)
    low, high = bench._bootstrap_interval(refresh, full)
    assert low < share < high
    ratios = [r / f for r, f in zip(refresh, full, strict=True)]
    assert min(ratios) <= low and high <= max(ratios)
    # the same pairs print the same interval
    assert bench._bootstrap_interval(refresh, full) == (low, high)


def test_the_share_of_the_totals_is_below_the_mean_of_uneven_ratios(bench: ModuleType) -> None:
    # Why the headline is the ratio of the means: equal refreshes against one short and one
    # long full build average 37.5 % per pair, but take a third of the full builds' time.
    refresh, full = [2000.0, 2000.0], [4000.0, 8000.0]
    assert sum(refresh) / sum(full) == pytest.approx(1 / 3)
    low, high = bench._bootstrap_interval(refresh, full)
    assert low == pytest.approx(0.25) and high == pytest.approx(0.5)
