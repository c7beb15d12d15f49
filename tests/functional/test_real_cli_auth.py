"""osbuild's CLI authenticating against the real Keystone: each auth variant, and a wrong one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.errors import EXIT_INVALID_INPUT
from osbuild.resources import examples_dir
from osbuild_sim.media import cloudbase_msi_standin
from tests.support.realservices import ProjectUser, RealServices

CLOUD = "osbuild-real"


@pytest.fixture(scope="module")
def user(real_services: RealServices) -> ProjectUser:
    return real_services.create_project_user("cli-auth", "cli-user")


def _run(
    rs: RealServices,
    auth: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    *argv: str,
) -> tuple[int, str, str]:
    path = rs.write_clouds_yaml(tmp_path / "clouds.yaml", CLOUD, auth)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    capsys.readouterr()
    code = main([*argv, "--os-cloud", CLOUD])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("variant", ["project-by-name", "project-by-id", "app-credential"])
def test_each_auth_variant_reaches_glance(
    real_services: RealServices,
    user: ProjectUser,
    variant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    if variant == "app-credential":
        auth = real_services.create_application_credential(user, f"cli-{id(tmp_path):x}").auth(
            real_services.auth_url
        )
    else:
        auth = user.auth(real_services.auth_url, by_id=variant == "project-by-id")
    code, out, err = _run(
        real_services, auth, tmp_path, monkeypatch, capsys,
        "images", "--family", "nothing-here", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    assert json.loads(out) is not None  # the family listing came back from the real Glance


@pytest.mark.parametrize("command", ["images", "build"])
def test_wrong_password_exits_2_with_one_clear_line(
    real_services: RealServices,
    user: ProjectUser,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    auth = {**user.auth(real_services.auth_url), "password": "wrong-" + user.password}
    if command == "build":
        spec = tmp_path / "ws2022-standard.yaml"
        spec.write_text((examples_dir() / spec.name).read_text())
        (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
        argv: tuple[str, ...] = ("build", str(spec), "--log-dir", str(tmp_path / "logs"))
    else:
        argv = ("images", "--family", "nothing-here")
    images_before = {i.id for i in real_services.connect().image.images()}
    code, _out, err = _run(real_services, auth, tmp_path, monkeypatch, capsys, *argv)
    assert {i.id for i in real_services.connect().image.images()} == images_before
    assert code == EXIT_INVALID_INPUT
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("osbuild: error: ") for line in lines), err
    assert "authentication failed" in err and CLOUD in err
    assert user.password not in err and "wrong-" not in err
