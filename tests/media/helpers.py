"""Constants and small helpers shared by the guest-media tests."""

from __future__ import annotations

from pathlib import Path

from osbuild import resources

EXAMPLES = sorted(p.name for p in resources.examples_dir().glob("*.yaml"))
NONCE = "0123456789abcdef0123456789abcdef"
PASSWORD = "Tr0ub4dor&3-Horse!Battery"
BUILD_ID = "20261126t031500-a1b2c3"
# Distinct from anything in the templates so a leak is unambiguous.
MSI_BYTES = b"stand-in cloudbase-init MSI\x00" * 64


def write_spec(directory: Path, text: str, *, msi: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if msi:
        (directory / "CloudbaseInitSetup_x64.msi").write_bytes(MSI_BYTES)
    path = directory / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL_SPEC = """\
name: test-family
windows:
  version: "2022"
  edition: SERVERSTANDARD
  iso_image: win.iso
virtio:
  iso_image: virtio-win.iso
cloudbase_init:
  msi: CloudbaseInitSetup_x64.msi
builder:
  flavor: m1.large
image:
  name: "test-{date}"
"""


def rendered_script(media: object, name: str) -> str:
    """A rendered script under osbuild/scripts/, as text (without its BOM)."""
    from osbuild.media import layout

    root: Path = media.root  # type: ignore[attr-defined]
    return (root / layout.SCRIPTS_DIR / name).read_bytes().decode("utf-8-sig")
