"""`osbuild build --help` answers without loading the cloud layer or the spec model."""

from __future__ import annotations

import subprocess
import sys


def test_build_help_loads_neither_openstack_nor_pydantic() -> None:
    code = ("import sys\nfrom osbuild.cli import main\n"
            "try:\n    main(['build', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & "
            "{'openstack', 'pydantic', 'keystoneauth1'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "--wait-lock [DURATION]" in done.stdout
    assert "(default 6h)" in done.stdout
    assert "LOADED []" in done.stdout, done.stdout
