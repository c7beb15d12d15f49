"""How osbuild names what it creates, read back: gc finds a dead build's resources by name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from osbuild import naming


def test_a_resource_name_gives_back_its_build_id_and_role() -> None:
    build_id = naming.new_build_id(datetime(2026, 11, 26, 3, 15, tzinfo=UTC))
    for role in ("builder", "iso", "verify-root", "image"):
        assert naming.parse_resource_name(naming.resource_name(build_id, role)) == (
            build_id, role)


@pytest.mark.parametrize("name", [
    "ws2022-standard-20261126t031500",  # a published image's name
    "osbuild-20261126t031500-a1b2c3",  # no role
    "osbuild-20261126t031500-A1B2C3-builder",  # the id's hex is lowercase
    "osbuild-2026112t031500-a1b2c3-builder",  # the date is eight digits
    "osbuild-20261126t031500-a1b2c3-Builder",  # roles are lowercase
    "my-osbuild-20261126t031500-a1b2c3-builder",
    "",
])
def test_other_names_are_not_resource_names(name: str) -> None:
    assert naming.parse_resource_name(name) is None
