"""The CLI's shape: `osbuild --help` imports no sub-command, `images` keeps its old spellings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from osbuild.cli import COMMANDS, build_parser, main
from osbuild.cli.images import normalize


def test_top_level_help_imports_no_sub_command_and_no_openstack() -> None:
    code = ("import sys; from osbuild.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "loaded = [m for m in sys.modules if m.startswith(('openstack', 'osbuild.cli.',"
            " 'osbuild.pipeline', 'rich'))]\n"
            "print('LOADED', loaded)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "LOADED []" in done.stdout, done.stdout
    for name in COMMANDS:
        assert name in done.stdout


def test_only_the_named_command_gets_its_arguments() -> None:
    parser = build_parser(["validate", "x.yaml"])
    assert parser.parse_args(["validate", "x.yaml"]).specs == ["x.yaml"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["ws.yaml"], ["list", "ws.yaml"]),
    (["--family", "ws2022"], ["list", "--family", "ws2022"]),
    (["--os-cloud", "c", "prune", "ws.yaml"], ["prune", "--os-cloud", "c", "ws.yaml"]),
    (["--family", "prune", "--json"], ["list", "--family", "prune", "--json"]),
    (["promote", "img"], ["promote", "img"]),
    (["--help"], ["--help"]),
    ([], ["list"]),
])
def test_images_keeps_todays_spellings(argv: list[str], expected: list[str]) -> None:
    assert normalize(argv) == expected


def test_images_help_lists_every_action_with_its_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "--help"]) == 0
    out = capsys.readouterr().out
    for usage in ("osbuild images list", "osbuild images prune", "osbuild images promote",
                  "osbuild images rollback", "osbuild images verify", "--dry-run",
                  "--max-age", "--state-dir"):
        assert usage in out


def test_images_without_a_family_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "promote"]) == 2
    assert "IMAGE" in capsys.readouterr().err


def test_ctrl_c_while_the_command_loads_exits_130(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A cron wrapper reads 130 for Ctrl-C on every path, also before the command has started.
    import osbuild.cli as cli

    def interrupted(argv: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["build", "spec.yaml"]) == 130
    assert "osbuild: interrupted" in capsys.readouterr().err
