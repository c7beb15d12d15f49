"""The launcher without the functional extra: a clear reason, nothing started."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.support import realservices
from tests.support.realservices import RealServices, RealServicesError


@pytest.fixture
def no_glance(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "glance" else real_find_spec(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(realservices.importlib.util, "find_spec", find_spec)


def test_missing_module_is_named_with_the_install_command(no_glance: None) -> None:
    reason = realservices.missing_requirements()
    assert reason is not None
    assert re.search(r"missing: [^)]*\bglance\b", reason)
    assert "pip install -e '.[test,functional]'" in reason


def test_start_refuses_before_creating_anything(no_glance: None, tmp_path: Path) -> None:
    workdir = tmp_path / "rs"
    with pytest.raises(RealServicesError, match="functional extra is not installed"):
        RealServices(workdir).start()
    assert not workdir.exists()


def test_clouds_yaml_is_private_and_uses_the_given_auth(tmp_path: Path) -> None:
    import yaml

    rs = RealServices(tmp_path)
    auth = {
        "auth_url": "http://127.0.0.1:1/v3",
        "application_credential_id": "abc",
        "application_credential_secret": "s3cret",
    }
    path = rs.write_clouds_yaml(tmp_path / "clouds.yaml", "c1", auth)
    assert path.stat().st_mode & 0o777 == 0o600
    cloud = yaml.safe_load(path.read_text())["clouds"]["c1"]
    assert cloud["auth_type"] == "v3applicationcredential"
    assert cloud["auth"] == auth
