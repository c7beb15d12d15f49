"""Setup commands of the real-services launcher never show the password they carry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, module_env, run_logged
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


def test_a_module_child_started_elsewhere_imports_the_helpers_of_this_tree(
    tmp_path: Path,
) -> None:
    # Real Cinder and Nova run as `python -m tests.support.X` in their own work folder; in a
    # non-editable install (tox) only PYTHONPATH leads them back to this repository.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import tests.support.processes as p; print(p.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=module_env(env),
                          capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()) == REPO_ROOT / "tests" / "support" / "processes.py"
