"""The Keystone launcher's setup commands: no secret on a command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import realservices
from tests.support.realservices import RealServices


def test_keystone_bootstrap_gets_the_admin_password_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A command line is world-readable (`ps`, /proc/PID/cmdline); keystone-manage reads
    # OS_BOOTSTRAP_PASSWORD first (keystone/cmd/cli.py BootStrap.__init__).
    rs = RealServices(tmp_path)
    rs.logs_dir.mkdir(parents=True)
    calls: list[tuple[list[str], dict[str, str]]] = []

    class Bootstrapped(Exception):
        pass

    def run(service: str, argv: list[str], env: dict[str, str], log: Path, *,
            secret: str | None = None) -> None:
        calls.append((argv, env))
        if "bootstrap" in argv:
            raise Bootstrapped

    monkeypatch.setattr(realservices, "require_tool", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(rs, "_run", run)
    with pytest.raises(Bootstrapped):
        rs._start_keystone()
    *setup, (argv, env) = calls
    assert argv[3] == "bootstrap" and "--bootstrap-admin-url" in argv
    assert not [arg for arg in argv if rs.admin_password in arg]
    assert env["OS_BOOTSTRAP_PASSWORD"] == rs.admin_password
    assert setup and all("OS_BOOTSTRAP_PASSWORD" not in e for _, e in setup)
