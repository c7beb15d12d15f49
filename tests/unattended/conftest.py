"""The simulated cloud for the unattended tests (one per module: gc tests clean up after each)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import BOOT_IMAGE, image


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    from osbuild_sim import SimCloud

    with SimCloud(speed=600.0) as cloud:
        image(cloud.connect(), BOOT_IMAGE, min_disk=1)
        yield cloud
