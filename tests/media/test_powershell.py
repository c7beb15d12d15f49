"""Rendered PowerShell: every script parses; spec values land as single string literals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuild import markers
from osbuild.media import layout, stages, windows
from osbuild.media.quoting import ps_string, ps_value
from osbuild.media.render import refresh_user_data
from osbuild.spec import load_spec

from . import pwsh
from .helpers import EXAMPLES, MINIMAL_SPEC, write_spec

HOSTILE_TEXT = [
    "plain",
    "it's",
    "'; Remove-Item C:\\ -Recurse; '",
    "\u2019; Remove-Item C:\\ -Recurse; \u2018",
    '"$(Remove-Item C:\\)"',
    "$env:SystemRoot `n `$x",
    "]]> <![CDATA[ & <tag>",
    "line one\nline two\r\nline three",
    "caf\u00e9 \u00fcber \u65e5\u672c \U0001f600",
    "'",
    "''",
    "",
    "@'\n'@",
    "#> <# comment",
]


def test_checker_catches_broken_scripts() -> None:
    # Guards the guard: a checker that accepts everything would make the tests below moot.
    assert pwsh.problems(pwsh.parse("$a = 'unterminated\n")) != []
    assert pwsh.problems(pwsh.parse("if ($a) { Write-Host 'x'\n")) != []
    assert pwsh.problems(pwsh.parse("$a = 'fine'\n")) == []


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_ps_string_is_one_literal_with_the_same_value(value: str) -> None:
    tree = pwsh.parse(f"$value = {ps_string(value)}\nWrite-Output $value\n")
    assert pwsh.problems(tree) == []
    literals = pwsh.nodes(tree, "string_literal")
    assert len(literals) == 1
    assert pwsh.verbatim_value(literals[0]) == value
    # nothing of the value became a command
    commands = [(n.text or b"").decode() for n in pwsh.nodes(tree, "command_name")]
    assert commands == ["Write-Output"]


def test_ps_value_handles_plain_types() -> None:
    assert ps_value(True) == "$true"
    assert ps_value(False) == "$false"
    assert ps_value(3) == "3"
    assert ps_value(None) == "$null"
    assert ps_value(["a", "b'c"]) == "@('a', 'b''c')"


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_rendered_script_parses(name, example_spec, render) -> None:
    media = render(example_spec(name))
    scripts = sorted((media.root / layout.SCRIPTS_DIR).rglob("*.ps1"))
    names = {p.name for p in scripts}
    assert {"firstlogon.ps1", "lib.ps1"} <= names
    assert {f"stage-{s}.ps1" for s in media.plan.stages} <= names
    for script in scripts:
        data = script.read_bytes()
        # Windows PowerShell 5.1 needs the BOM to read UTF-8.
        assert data.startswith(b"\xef\xbb\xbf"), script.name
        assert pwsh.problems(pwsh.parse(data)) == [], script.name


def _settings_literals(script: bytes) -> dict[str, str]:
    tree = pwsh.parse(script)
    assert pwsh.problems(tree) == []
    values = {}
    for literal in pwsh.nodes(tree, "string_literal"):
        value = pwsh.verbatim_value(literal)
        if value is not None:
            values[value] = value
    return values


@pytest.mark.parametrize(
    "username",
    ["O'Brien", "J\u00fcrgen M\u00fcller", "x\u2019y", "$(whoami)", "`$a", "a b'c"],
)
def test_hostile_username_stays_one_literal(tmp_path: Path, render, username: str) -> None:
    quoted = username.replace("'", "''")
    body = MINIMAL_SPEC.replace(
        "msi: CloudbaseInitSetup_x64.msi",
        f"msi: CloudbaseInitSetup_x64.msi\n  username: '{quoted}'",
    )
    spec = load_spec(write_spec(tmp_path / "spec", body))
    assert spec.cloudbase_init.username == username
    media = render(spec)
    script = (media.root / layout.FIRSTLOGON_SCRIPT).read_bytes()
    literals = _settings_literals(script)
    assert username in literals
    tree = pwsh.parse(script)
    commands = {(n.text or b"").decode() for n in pwsh.nodes(tree, "command_name")}
    assert "whoami" not in commands


def test_scripts_do_not_embed_the_nonce(example_spec, render) -> None:
    media = render(example_spec(EXAMPLES[0]))
    for script in (media.root / layout.SCRIPTS_DIR).rglob("*.ps1"):
        assert media.nonce.encode() not in script.read_bytes()
    lib = (media.root / layout.SCRIPTS_DIR / "lib.ps1").read_text(encoding="utf-8-sig")
    # the marker writer reads the nonce file named in layout.py
    assert "'" + layout.NONCE_FILE.replace("/", "\\") + "'" in lib


def test_scripts_share_state_without_scope_modifiers(example_spec, render) -> None:
    # Stage scripts run in their own script scope: `$script:X` there would name the stage's
    # scope, not the driver's, and StrictMode would stop on the unset variable.
    media = render(example_spec("ws2022-standard.yaml"))
    for script in (media.root / layout.SCRIPTS_DIR).rglob("*.ps1"):
        tree = pwsh.parse(script.read_bytes())
        names = [(n.text or b"").decode().lower() for n in pwsh.nodes(tree, "variable")]
        assert names, script.name
        assert not [n for n in names if n.startswith(("$script:", "$global:"))], script.name


def _eval_concat(expression: str, values: dict[str, str]) -> str:
    """Evaluate a PowerShell `a + b + c` of literals and known variables/calls."""
    out = []
    for term in expression.split(" + "):
        term = term.strip()
        if term.startswith("'"):
            literal = pwsh.nodes(pwsh.parse(term), "string_literal")[0]
            out.append(pwsh.verbatim_value(literal) or "")
        else:
            out.append(values[term])
    return "".join(out)


def test_marker_writer_follows_the_marker_grammar(example_spec, render) -> None:
    media = render(example_spec("ws2022-standard.yaml"))
    lib = (media.root / layout.SCRIPTS_DIR / "lib.ps1").read_text(encoding="utf-8-sig")
    base = re.search(r"^\s*\$line = (.+)$", lib, re.MULTILINE)
    detail = re.search(r"^\s*if \(\$clean\) \{ \$line \+= (.+) \}$", lib, re.MULTILINE)
    assert base and detail
    nonce = media.nonce
    for stage in stages.names()[2:]:
        for status in markers.Status:
            values = {"(Get-OsbuildNonce)": nonce, "$Stage": stage, "$Status": status.value,
                      "$clean": "pass 1/3: 2 updates"}
            line = _eval_concat(base.group(1), values)
            assert markers.parse_line(line, nonce) == markers.Marker(stage, status)
            line += _eval_concat(detail.group(1), values)
            assert markers.parse_line(line, nonce) == markers.Marker(
                stage, status, "pass 1/3: 2 updates")


def test_scripts_name_the_layout_paths(example_spec, render) -> None:
    media = render(example_spec("ws2022-standard.yaml"))
    scripts = media.root / layout.SCRIPTS_DIR

    def literals(name: str) -> set[str]:
        tree = pwsh.parse((scripts / name).read_bytes())
        return {v for n in pwsh.nodes(tree, "string_literal")
                if (v := pwsh.verbatim_value(n)) is not None}

    def win(path: str) -> str:
        return path.replace("/", "\\")

    assert {win(layout.TAG_FILE), win(layout.PLAN_FILE)} <= literals("firstlogon.ps1")
    assert win(layout.NONCE_FILE) in literals("lib.ps1")
    cbi = literals("stage-cloudbaseinit.ps1")
    assert win(layout.CLOUDBASE_DIR) in cbi
    assert {Path(layout.CLOUDBASE_CONF).name, Path(layout.CLOUDBASE_UNATTEND_CONF).name} <= cbi
    virtio = literals("stage-virtio.ps1")
    assert {windows.VIRTIO_GUEST_TOOLS, win(windows.VIRTIO_QEMU_GA_MSI)} <= virtio
    # the driver runs each plan stage from the script the stage table names, which render
    # wrote beside it
    driver = (scripts / "firstlogon.ps1").read_text(encoding="utf-8-sig")
    assert "Join-Path $PSScriptRoot $StageScripts[$stage]" in driver
    for stage in media.plan.stages:
        assert f"'{stage}' = '{stages.script_name(stage)}'" in driver
        assert (media.root / stages.script_file(stage)).is_file()


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_powershell_launch_is_non_interactive(name, example_spec, render) -> None:
    # A prompt nobody can answer (a confirmation, Read-Host) would hang the build silently.
    media = render(example_spec(name))
    launches: list[str] = []
    for script in (media.root / layout.SCRIPTS_DIR).rglob("*.ps1"):
        text = script.read_text(encoding="utf-8-sig")
        # Argument strings of Start-Process, and command lines (the resume task's).
        launches += re.findall(r"[\"'](-NoProfile[^\"'`]*)", text)
        launches += re.findall(r"powershell\.exe[^'\r\n]*", text)
    launches += re.findall(r"powershell\.exe[^<\r\n]*",
                           (media.root / "autounattend.xml").read_text(encoding="utf-8"))
    assert launches
    assert all("-NonInteractive" in line for line in launches), launches


def test_the_library_turns_the_progress_bar_off_before_any_download(
        example_spec, render) -> None:
    # Windows PowerShell 5.1's progress bar makes Invoke-WebRequest 10-50x slower.
    media = render(example_spec(EXAMPLES[0]))
    lib = (media.root / layout.SCRIPTS_DIR / "lib.ps1").read_text(encoding="utf-8-sig")
    tree = pwsh.parse(lib.encode())
    assigned = [node.text.decode() for node in pwsh.nodes(tree, "assignment_expression")]
    assert "$ProgressPreference = 'SilentlyContinue'" in assigned
    first_function = lib.index("function ")
    assert lib.index("$ProgressPreference") < first_function


@pytest.mark.parametrize(("source", "expected"), [
    ("Write-Output 'Grüße'\n".encode(), b"\xef\xbb\xbf" + "Write-Output 'Grüße'\n".encode()),
    (b"\xef\xbb\xbfWrite-Output 'x'\n", b"\xef\xbb\xbfWrite-Output 'x'\n"),
    ("Write-Output 'x'\n".encode("utf-16"), "Write-Output 'x'\n".encode("utf-16")),
    (b"Write-Output '\xe9t\xe9'\n", b"Write-Output '\xe9t\xe9'\n"),  # ANSI, on purpose
], ids=["utf8-gets-bom", "bom-kept", "utf16-kept", "ansi-kept"])
def test_user_scripts_reach_powershell_5_1_readable(
        tmp_path: Path, render, source: bytes, expected: bytes) -> None:
    (tmp_path / "mine.ps1").write_bytes(source)
    spec = load_spec(write_spec(tmp_path, MINIMAL_SPEC + "scripts: [mine.ps1]\n"))
    media = render(spec)
    [copied] = (media.root / layout.USER_SCRIPTS_DIR).glob("*.ps1")
    assert copied.read_bytes() == expected


def test_refresh_user_data_parses_and_starts_the_driver_non_interactively() -> None:
    # cloudbase-init's UserDataPlugin runs `#ps1_sysnative` user data with the 64-bit
    # PowerShell; the first line picks the interpreter and is a comment to PowerShell.
    text = refresh_user_data()
    assert text.startswith("#ps1_sysnative\n")
    assert pwsh.problems(pwsh.parse(text.encode())) == []
    commands = [(n.text or b"").decode() for n in pwsh.nodes(pwsh.parse(text.encode()),
                                                               "command_name")]
    assert commands == ["Start-Process"]
    assert "-NonInteractive" in text and layout.FIRSTLOGON_SCRIPT.replace("/", "\\") in text
