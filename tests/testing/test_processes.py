"""Setup commands of the real-services launcher never show the password they carry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.processes import run_logged
from tests.support.realservices import RealServicesError


def test_failed_command_masks_a_password_inside_an_argument(tmp_path: Path) -> None:
    secret = "-Zk3_dash-first-secret"  # token_urlsafe can start with "-"
    log = tmp_path / "svc.log"
    argv = [sys.executable, "-c", "import sys; sys.exit(3)", f"--bootstrap-password={secret}"]
    with pytest.raises(RealServicesError) as err:
        run_logged("keystone", argv, env=dict(os.environ), log=log, cwd=tmp_path, secret=secret)
    assert "exited 3" in str(err.value)
    assert "--bootstrap-password=***" in str(err.value)
    assert secret not in str(err.value)
    assert secret not in log.read_text()
