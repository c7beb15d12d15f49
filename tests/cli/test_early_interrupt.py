"""Ctrl-C while the command line loads exits 130, never by SIGINT (-2 to a parent process).

A `sitecustomize` hook sends SIGINT to the process when a chosen module starts importing,
from inside a string `exec` as when the signal lands while a dataclass is being made (CPython
then marks the interrupt unhandled even once caught: see osbuild/__main__.py). What runs
before osbuild/__main__.py (interpreter start-up, `site`, runpy) cannot be covered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HOOK = '''
import importlib.abc, os, sys

class InterruptOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == os.environ["OSBUILD_TEST_SIGINT_AT"]:
            sys.meta_path.remove(self)
            exec("import signal; signal.raise_signal(signal.SIGINT)", {})
        return None

sys.meta_path.insert(0, InterruptOnImport())
'''

# From the first module the entry imports to the last one the command loads.
WHERE = ("osbuild.cli", "osbuild.cli.validate", "osbuild.redact", "osbuild.spec")


def console_script(tmp_path: Path) -> list[str]:
    """What pip writes for the `osbuild` entry point of pyproject.toml."""
    entry = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["osbuild"]
    module, _, function = entry.partition(":")
    script = tmp_path / "osbuild"
    script.write_text(f"import re\nimport sys\nfrom {module} import {function}\n"
                      f"if __name__ == '__main__':\n    sys.exit({function}())\n")
    return [sys.executable, str(script)]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("entry", ["python -m osbuild", "console script"])
def test_ctrl_c_while_the_command_loads_exits_130(tmp_path: Path, entry: str,
                                                  where: str) -> None:
    (tmp_path / "sitecustomize.py").write_text(HOOK)
    argv = ([sys.executable, "-m", "osbuild"] if entry == "python -m osbuild"
            else console_script(tmp_path))
    env = {**os.environ, "OSBUILD_TEST_SIGINT_AT": where,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([*argv, "validate", str(tmp_path / "missing.yaml")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "osbuild: interrupted\n")
