"""render_media: the tree, the plan, user scripts, secrets, and `osbuild render`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
from pathlib import Path

import pytest

from osbuild import markers
from osbuild.cli import main
from osbuild.errors import InvalidInput
from osbuild.media import layout, stages, windows
from osbuild.media import render as render_module
from osbuild.media.layout import GuestPlan
from osbuild.media.render import generate_password, new_nonce, render_media, user_script_name
from osbuild.spec import load_spec

from .helpers import BUILD_ID, EXAMPLES, MINIMAL_SPEC, MSI_BYTES, NONCE, PASSWORD, write_spec


def _spec(tmp_path: Path, extra: str = "", replace: tuple[str, str] | None = None):
    body = MINIMAL_SPEC + extra
    if replace:
        assert replace[0] in body
        body = body.replace(*replace)
    return load_spec(write_spec(tmp_path / "spec", body))


@pytest.mark.parametrize("name", EXAMPLES)
def test_plan_matches_spec(name, example_spec, render) -> None:
    spec = example_spec(name)
    media = render(spec)
    on_disk = GuestPlan.from_json((media.root / layout.PLAN_FILE).read_text())
    assert on_disk == media.plan
    plan = media.plan
    assert plan.build_id == BUILD_ID
    assert plan.windows.image_name == spec.windows.image_name
    assert plan.windows.firmware == spec.windows.firmware
    assert plan.windows.disk_bus == spec.builder.disk_bus
    assert plan.virtio.os_folder == windows.virtio_os_folder(spec.windows.version)
    assert plan.virtio.winpe_drivers == spec.virtio.winpe_drivers
    assert plan.updates.max_passes == spec.updates.max_passes
    assert plan.cloudbase_init.path == layout.CLOUDBASE_MSI
    assert plan.cloudbase_init.url is None
    assert plan.cloudbase_init.sha256 == hashlib.sha256(MSI_BYTES).hexdigest()
    assert (media.root / layout.CLOUDBASE_MSI).read_bytes() == MSI_BYTES
    # stages: a subsequence of the stage table's first-logon stages
    table = [s.name for s in stages.GUEST_STAGES if s.in_plan]
    order = [table.index(s) for s in plan.stages]
    assert order == sorted(order)
    assert ("updates" in plan.stages) == spec.updates.enabled
    assert plan.stages[-2:] == ("cleanup", "sysprep")
    assert (media.root / layout.TAG_FILE).read_text() == layout.TAG_CONTENT
    assert (media.root / layout.NONCE_FILE).read_text().strip() == NONCE


def test_user_scripts_are_numbered_copied_and_planned(tmp_path: Path, render) -> None:
    spec_dir = tmp_path / "spec"
    (spec_dir / "scripts").mkdir(parents=True)
    (spec_dir / "scripts" / "install agent.ps1").write_text("Write-Host 'agent'\n")
    (spec_dir / "harden.ps1").write_text("Write-Host 'harden'\n")
    spec = _spec(tmp_path, "scripts:\n  - scripts/install agent.ps1\n  - harden.ps1\n")
    media = render(spec)
    assert media.plan.scripts == (
        f"{layout.USER_SCRIPTS_DIR}/01-install-agent.ps1",
        f"{layout.USER_SCRIPTS_DIR}/02-harden.ps1",
    )
    assert "scripts" in media.plan.stages
    copied = (media.root / media.plan.scripts[1]).read_text(encoding="utf-8-sig")
    assert copied == "Write-Host 'harden'\n"
    assert (media.root / layout.SCRIPTS_DIR / "stage-scripts.ps1").is_file()


def test_no_scripts_no_updates_means_no_such_stages(tmp_path: Path, render) -> None:
    media = render(_spec(tmp_path))
    assert media.plan.stages == ("virtio", "cloudbaseinit", "cleanup", "sysprep")
    assert media.plan.scripts == ()
    assert not (media.root / layout.SCRIPTS_DIR / "stage-updates.ps1").exists()


def test_virtio_stage_dropped_when_nothing_to_install(tmp_path: Path, render) -> None:
    spec = _spec(tmp_path, replace=(
        "iso_image: virtio-win.iso", "iso_image: virtio-win.iso\n  guest_tools: false\n"
        "  qemu_ga: false"))
    assert render(spec).plan.stages == ("cloudbaseinit", "cleanup", "sysprep")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a.ps1", "01-a.ps1"),
        ("dir/My Script.PS1", "01-My-Script.ps1"),
        ("'; Remove-Item C:\\ -Recurse; '.ps1", "01-Remove-Item-C--Recurse.ps1"),
        ("caf\u00e9.ps1", "01-caf.ps1"),
        ("....ps1", "01-script.ps1"),
        ("x" * 100 + ".ps1", "01-" + "x" * 40 + ".ps1"),
    ],
)
def test_user_script_names_are_safe(source: str, expected: str) -> None:
    assert user_script_name(0, source) == expected
    assert re.fullmatch(r"\d\d-[A-Za-z0-9._-]+\.ps1", expected)


def test_url_msi_is_downloaded_by_the_guest(tmp_path: Path, render) -> None:
    digest = "ab" * 32
    url = "https://example.org/CloudbaseInitSetup_x64.msi"
    spec = _spec(tmp_path, replace=(
        "msi: CloudbaseInitSetup_x64.msi", f"msi: {url}\n  sha256: {digest}"))
    media = render(spec)
    assert media.plan.cloudbase_init.url == url
    assert media.plan.cloudbase_init.path is None
    assert media.plan.cloudbase_init.sha256 == digest
    assert not (media.root / layout.CLOUDBASE_MSI).exists()


def test_local_msi_checksum_mismatch_is_refused(tmp_path: Path, render) -> None:
    # quoted: an all-digit checksum would otherwise be a YAML integer
    wrong = f"msi: CloudbaseInitSetup_x64.msi\n  sha256: \"{'0' * 64}\""
    spec = _spec(tmp_path, replace=("msi: CloudbaseInitSetup_x64.msi", wrong))
    with pytest.raises(InvalidInput, match=r"cloudbase_init\.sha256"):
        render(spec)


def test_rerender_replaces_own_tree_but_never_a_foreign_directory(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    render_media(spec, out, build_id=BUILD_ID)
    (out / "config" / "stale.txt").write_text("old")
    render_media(spec, out, build_id=BUILD_ID)
    assert not (out / "config" / "stale.txt").exists()
    foreign = tmp_path / "foreign"
    (foreign / "config").mkdir(parents=True)
    (foreign / "config" / "precious.txt").write_text("keep")
    with pytest.raises(InvalidInput, match="not an osbuild config tree"):
        render_media(spec, foreign, build_id=BUILD_ID)
    assert (foreign / "config" / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"build_id": "../escape"}, "build id"),
        ({"build_id": ""}, "build id"),
        ({"build_id": BUILD_ID, "nonce": "ABC"}, "nonce"),
        ({"build_id": BUILD_ID, "nonce": "g" * 32}, "nonce"),
        ({"build_id": BUILD_ID, "password": "tab\there"}, "password"),
    ],
)
def test_bad_render_inputs(tmp_path: Path, kwargs, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        render_media(_spec(tmp_path), tmp_path / "out", **kwargs)
    assert "tab\there" not in str(info.value)


def test_generated_passwords_are_complex_and_random() -> None:
    seen = {generate_password() for _ in range(50)}
    assert len(seen) == 50
    for password in seen:
        assert len(password) >= 16
        for group in (string.ascii_uppercase, string.ascii_lowercase, string.digits):
            assert any(ch in group for ch in password)
        assert any(not ch.isalnum() for ch in password)
        assert password.isprintable() and " " not in password


def test_nonces_follow_the_marker_grammar() -> None:
    nonces = {new_nonce() for _ in range(20)}
    assert len(nonces) == 20
    for nonce in nonces:
        assert re.fullmatch(rf"[0-9a-f]{{{markers.NONCE_LENGTH}}}", nonce)
        line = markers.Marker("virtio", markers.Status.OK).render(nonce)
        assert markers.parse_line(line, nonce) == markers.Marker("virtio", markers.Status.OK)


def _secret_forms(password: str, key: str) -> list[bytes]:
    forms = [password.encode(), password.encode("utf-16-le"), key.encode()]
    for suffix in ("Password", "AdministratorPassword"):
        forms.append(base64.b64encode((password + suffix).encode("utf-16-le")))
    # any long-enough base64 slice of the obfuscated value would also be a leak
    forms.append(base64.b64encode(password.encode("utf-16-le"))[:16])
    return forms


@pytest.mark.parametrize("name", EXAMPLES)
def test_secrets_only_in_the_answer_file(name, example_spec, render) -> None:
    spec = example_spec(name)
    media = render(spec)
    key = spec.windows.resolved_product_key() or "no-key-on-evaluation-media"
    for path in media.root.rglob("*"):
        if not path.is_file() or path.name == layout.ANSWER_FILE:
            continue
        data = path.read_bytes()
        for form in _secret_forms(PASSWORD, key):
            assert form not in data, f"secret in {path.relative_to(media.root)}"
    answer = media.root / layout.ANSWER_FILE
    assert answer.stat().st_mode & 0o077 == 0
    assert media.iso_path.stat().st_mode & 0o077 == 0
    assert PASSWORD not in repr(media)
    assert PASSWORD not in media.plan.to_json()


def test_generated_password_is_used_and_never_returned(tmp_path: Path, monkeypatch) -> None:
    known = "Kn0wn-Generated!Pass#1"
    monkeypatch.setattr(render_module, "generate_password", lambda: known)
    media = render_media(_spec(tmp_path), tmp_path / "out", build_id=BUILD_ID)
    answer = (media.root / layout.ANSWER_FILE).read_text()
    assert base64.b64encode((known + "Password").encode("utf-16-le")).decode() in answer
    assert known not in repr(media)


def test_cli_render_writes_tree_and_iso_and_hides_the_password(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    known = "Cl1-Generated!Pass#2"
    monkeypatch.setattr(render_module, "generate_password", lambda: known)
    spec_path = write_spec(tmp_path / "spec", MINIMAL_SPEC)
    out = tmp_path / "out"
    assert main(["render", str(spec_path), "-o", str(out), "--build-id", "my-build.1"]) == 0
    captured = capsys.readouterr()
    assert (out / "config.iso").is_file()
    assert (out / "config" / layout.ANSWER_FILE).is_file()
    plan = json.loads((out / "config" / layout.PLAN_FILE).read_text())
    assert plan["build_id"] == "my-build.1"
    nonce = (out / "config" / layout.NONCE_FILE).read_text().strip()
    assert nonce in captured.out
    assert str(out / "config.iso") in captured.out
    assert known not in captured.out + captured.err


def test_cli_render_invalid_spec_exits_2(tmp_path: Path, capsys) -> None:
    spec_path = write_spec(tmp_path / "spec", MINIMAL_SPEC.replace("flavor: m1.large", "flavr: x"))
    assert main(["render", str(spec_path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "builder.flavr: unknown key" in err
    assert not (tmp_path / "out").exists()
