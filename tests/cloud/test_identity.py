"""What keys locks, state and reports for a connection: the cloud and, when it matters, region."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuild.cloud.connect import cloud_identity, connect

AUTH = ("auth: {auth_url: 'http://keystone.example:5000/v3', username: u, password: s3cret-pw,"
        " project_name: images, user_domain_name: Default, project_domain_name: Default}")


@pytest.fixture(autouse=True)
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        f"  multi:\n    {AUTH}\n    regions: [RegionOne, RegionTwo]\n"
        f"  single:\n    {AUTH}\n    region_name: RegionOne\n"
        f"  plain:\n    {AUTH}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    for name in ("OS_CLOUD", "OS_AUTH_URL", "OS_REGION_NAME", "OS_PASSWORD", "OS_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.mark.parametrize(("cloud", "region", "identity"), [
    ("single", None, "single"),
    ("single", "RegionOne", "single"),
    ("multi", None, "multi"),             # the entry's first region is its default
    ("multi", "RegionOne", "multi"),
    ("multi", "RegionTwo", "multi@RegionTwo"),
    ("plain", None, "plain"),
    ("plain", "RegionNine", "plain@RegionNine"),
])
def test_a_named_cloud_is_its_name_and_any_region_but_its_default(
        cloud: str, region: str | None, identity: str) -> None:
    conn = connect(cloud, region_name=region)
    try:
        assert cloud_identity(conn, cloud) == identity
    finally:
        conn.close()


def test_two_regions_of_one_cloud_never_share_a_lock() -> None:
    # The bug: both were "multi", so a cron job for RegionTwo skipped while RegionOne built.
    one, two = connect("multi", region_name="RegionOne"), connect("multi", region_name="RegionTwo")
    try:
        assert cloud_identity(one, "multi") != cloud_identity(two, "multi")
    finally:
        one.close()
        two.close()


def test_a_cloud_of_plain_os_variables_is_its_keystone_project_and_region(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "empty.yaml"))
    monkeypatch.setenv("OS_AUTH_URL", "http://admin:leak@keystone.example:5000/v3")
    monkeypatch.setenv("OS_USERNAME", "u")
    monkeypatch.setenv("OS_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("OS_PROJECT_NAME", "images")
    monkeypatch.setenv("OS_USER_DOMAIN_NAME", "Default")
    monkeypatch.setenv("OS_PROJECT_DOMAIN_NAME", "Default")
    conn = connect(None, region_name="RegionTwo")
    try:
        identity = cloud_identity(conn)
    finally:
        conn.close()
    assert identity == "keystone.example:5000/images@RegionTwo"
    assert "s3cret" not in identity and "leak" not in identity
