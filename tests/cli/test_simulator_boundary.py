"""The product loads the simulator only when `osbuild demo` or `osbuild sim` runs."""

from __future__ import annotations

import subprocess
import sys

HELP_ARGVS = [["demo", "--help"], ["sim", "--help"], ["sim", "serve", "--help"],
              ["build", "--help"], ["validate", "--help"]]


def test_help_of_every_command_leaves_the_simulator_and_the_tests_unloaded() -> None:
    code = ("import sys\nfrom osbuild.cli import main\n"
            f"for argv in {HELP_ARGVS!r}:\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "import osbuild.cli.demo, osbuild.cli.sim\n"
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
            "('osbuild_sim', 'tests')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.count("usage: osbuild") == len(HELP_ARGVS), done.stdout
    assert "LOADED []" in done.stdout, done.stdout
