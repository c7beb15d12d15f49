"""What `--help` loads: never the simulator or the tests, and for `build` not the cloud layer."""

from __future__ import annotations

import subprocess
import sys


def help_in_a_fresh_interpreter(argvs: list[list[str]], roots: set[str]) -> tuple[str, str]:
    """The help text of each command line, and which of `roots` the interpreter loaded."""
    code = ("import sys\nfrom osbuild.cli import main\n"
            f"for argv in {argvs!r}:\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            f"print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & {roots!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    out, _, loaded = done.stdout.rpartition("LOADED ")
    return out, loaded.strip()


def test_help_of_every_command_leaves_the_simulator_and_the_tests_unloaded() -> None:
    argvs = [["demo", "--help"], ["sim", "--help"], ["sim", "serve", "--help"],
             ["build", "--help"], ["validate", "--help"], ["report", "--help"],
             ["status", "--help"]]
    out, loaded = help_in_a_fresh_interpreter(argvs, {"osbuild_sim", "tests"})
    assert out.count("usage: osbuild") == len(argvs), out
    assert loaded == "[]"


def test_build_help_loads_neither_openstack_nor_pydantic() -> None:
    out, loaded = help_in_a_fresh_interpreter(
        [["build", "--help"]], {"openstack", "pydantic", "keystoneauth1"})
    assert "--wait-lock [DURATION]" in out
    assert "(default 6h)" in out
    assert loaded == "[]"


def test_report_and_status_help_load_neither_the_cloud_nor_the_page_templates() -> None:
    out, loaded = help_in_a_fresh_interpreter(
        [["report", "--help"], ["status", "--help"]],
        {"openstack", "pydantic", "keystoneauth1", "jinja2"})
    assert "BUILD_ID|REPORT_JSON" in out and "--html FILE" in out
    assert loaded == "[]"


def test_images_help_loads_neither_openstack_nor_pydantic() -> None:
    # 0.64-0.77 s before the actions moved to osbuild.cli.image_actions; 0.12 s after.
    out, loaded = help_in_a_fresh_interpreter(
        [["images", "--help"], ["images", "prune", "--help"], ["images", "verify", "--help"]],
        {"openstack", "pydantic", "keystoneauth1"})
    assert "IMAGE [SPEC]" in out and "--superseded {hide,delete}" in out
    assert loaded == "[]"
