"""Localised media: accounts and groups are found by well-known SID, not by English name.

German Windows calls S-1-5-32-544 `Administratoren`; the simulated guest names its built-in
groups and accounts as the media's language does (osbuild_sim/accounts.py), and its
deployed instance's cloudbase-init fails to add its user to a group that does not exist.
"""

from __future__ import annotations

import pytest

from osbuild_sim.media import windows_iso
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_a_german_server_iso_builds_with_its_own_group_names(cloud: Cloud) -> None:
    cloud.upload_iso("ws2022-de.iso", windows_iso("2022", language="de-DE"))
    spec = cloud.spec(windows={"iso_image": "ws2022-de.iso", "locale": "de-DE"},
                      updates={"enabled": False})
    run = cloud.build(spec)
    assert run.exit_code == 0, run.why
    record = cloud.image_record(run.success["image_id"])
    assert record["language"] == "de-DE"
    # cloudbase-init.conf names the group as this Windows does
    assert record["cloudbase_init_groups"] == ["Administratoren"]
    # the built-in Administrator (the server's build account) does not keep the build
    # password, and is disabled: cloudbase-init manages `Admin`, not it
    assert record["builtin_administrator"] == {"enabled": False, "password": "throwaway"}

