"""README's "What the guest media contain" names every file `osbuild render` writes, and
only files it writes (docs/guest.md names the driver by the same path)."""

from __future__ import annotations

import re
from pathlib import Path

from osbuild.media import stages
from osbuild.spec import load_spec

from .helpers import MINIMAL_SPEC, write_spec

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUEST_DOC = ROOT / "docs" / "guest.md"
# Named in the section but written in the guest, not by render: cloudbase-init's own file.
IN_THE_GUEST = {"Unattend.xml"}
_FILE = re.compile(r"`([\w./<>-]+\.(?:xml|ps1|conf|json|txt|tag|msi))`")


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n### What the guest media contain")
    return text[start:text.index("\nProgress reaches the serial console", start)]


def _named(text: str) -> set[str]:
    """The files each bullet names; a bare name is in the folder of the bullet's first path."""
    names: set[str] = set()
    for bullet in re.split(r"\n- ", text)[1:]:
        first = re.match(r"`([\w./-]+)`", bullet)
        folder = "" if first is None else first[1][:first[1].rfind("/") + 1]
        for name in set(_FILE.findall(bullet)) - IN_THE_GUEST:
            names.add(name if "/" in name else folder + name)
    return names


def _rendered(tmp_path: Path, render) -> set[str]:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "setup.ps1").write_text("Write-Host 'setup'\n")
    spec = load_spec(write_spec(spec_dir, MINIMAL_SPEC + "updates:\n  enabled: true\n"
                                "scripts:\n  - setup.ps1\n"))
    media = render(spec)
    return {p.relative_to(media.root).as_posix() for p in media.root.rglob("*") if p.is_file()}


def _matches(pattern: str, path: str) -> bool:
    regex = re.escape(pattern).replace("NN", r"\d\d").replace("<name>", r"[\w-]+")
    return re.fullmatch(regex, path) is not None


def test_every_file_the_readme_names_is_rendered_and_every_rendered_file_named(
        tmp_path: Path, render) -> None:
    rendered = _rendered(tmp_path, render)
    named = _named(_section())
    # The MSI is named by its folder: "the MSI when it is a local file".
    named.add("osbuild/cloudbase-init/CloudbaseInitSetup_x64.msi")
    missing = {n for n in named if not any(_matches(n, path) for path in rendered)}
    assert missing == set()
    unnamed = {path for path in rendered if not any(_matches(n, path) for n in named)}
    assert unnamed == set()


def test_each_plan_stage_has_the_script_the_readme_pattern_names(
        tmp_path: Path, render) -> None:
    rendered = _rendered(tmp_path, render)
    for stage in stages.GUEST_STAGES:
        if stage.in_plan:
            assert f"osbuild/scripts/stage-{stage.name}.ps1" in rendered, stage.name


def test_docs_guest_names_the_driver_where_render_puts_it(tmp_path: Path, render) -> None:
    rendered = _rendered(tmp_path, render)
    named = set(_FILE.findall(GUEST_DOC.read_text(encoding="utf-8")))
    assert "osbuild/scripts/firstlogon.ps1" in named
    assert {n for n in named if "/" in n} <= rendered
