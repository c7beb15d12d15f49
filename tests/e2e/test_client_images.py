"""Windows 10/11 images: no build password left behind, no Store app blocking sysprep."""

from __future__ import annotations

import pytest

from osbuild_sim.guest import STORE_UPDATED_PACKAGE
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_a_client_image_does_not_keep_the_build_password(cloud: Cloud) -> None:
    # Issue 13 item 9: the client's built-in Administrator never gets the build password
    # (no AdministratorPassword in the answer file) and is reset and disabled by cleanup.
    run = cloud.build(cloud.spec("win11-enterprise.yaml", verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    record = cloud.image_record(run.success["image_id"])
    assert record["builtin_administrator"] == {"enabled": False, "password": "throwaway"}
    assert not record.get("appx_user_updated")  # the Store policy held


def test_a_store_updated_app_does_not_fail_sysprep(cloud: Cloud) -> None:
    # Issue 13 item 4: the Store updated an app for the build user; sysprep would refuse to
    # generalize ("installed for a user, but not provisioned for all users"), so the
    # sysprep stage removes it for all users and deprovisions it first.
    cloud.sim.faults.add_guest_scenario({"store_updates_app": True}, name="builder$")
    run = cloud.build(cloud.spec("win11-enterprise.yaml", verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    record = cloud.image_record(run.success["image_id"])
    assert record["appx_removed"] == [STORE_UPDATED_PACKAGE]
    assert record["sysprep"] is True
