"""What `--help` loads: never the cloud layer, pydantic, the simulator or the tests."""

from __future__ import annotations

import argparse
import subprocess
import sys

from osbuild.cli import COMMANDS, build_parser


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


def command_lines() -> list[list[str]]:
    """Every sub-command and sub-sub-command (``sim serve``, ``images prune``...) of the CLI."""
    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        found = [prefix] if prefix else []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += walk(sub, [*prefix, name])
        return found
    return walk(build_parser(), [])


def test_help_of_every_command_loads_neither_the_cloud_nor_pydantic_nor_the_simulator() -> None:
    # Before each moved its imports into its handler: gc 0.48 s, resume and demo 0.60 s,
    # validate, render and schema 0.20-0.23 s; all 0.08-0.11 s after.
    argvs = [[*words, "--help"] for words in command_lines()]
    assert {argv[0] for argv in argvs} == set(COMMANDS)
    assert ["sim", "serve", "--help"] in argvs and ["images", "prune", "--help"] in argvs
    out, loaded = help_in_a_fresh_interpreter(
        argvs, {"openstack", "keystoneauth1", "pydantic", "osbuild_sim", "tests"})
    assert out.count("usage: osbuild") == len(argvs), out
    assert "--older-than DURATION" in out and "(default 6h; 0 for any" in out
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
