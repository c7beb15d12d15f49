"""Fixtures for the guest-media tests: example specs copied beside a stand-in MSI."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from osbuild import resources
from osbuild.media.render import RenderedMedia, render_media
from osbuild.spec import BuildSpec, load_spec

from .helpers import BUILD_ID, MSI_BYTES, NONCE, PASSWORD


@pytest.fixture
def example_spec(tmp_path: Path) -> Callable[[str], BuildSpec]:
    """Load an example spec from a copy beside a stand-in MSI (as the examples expect)."""

    def load(name: str) -> BuildSpec:
        target = tmp_path / "specs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(resources.examples_dir() / name, target)
        (target.parent / "CloudbaseInitSetup_x64.msi").write_bytes(MSI_BYTES)
        return load_spec(target)

    return load


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., RenderedMedia]:
    """Render a spec with a fixed nonce and password into a fresh directory."""
    counter = iter(range(1000))

    def run(spec: BuildSpec, **kwargs: object) -> RenderedMedia:
        options: dict[str, object] = {"build_id": BUILD_ID, "nonce": NONCE, "password": PASSWORD}
        options.update(kwargs)
        return render_media(spec, tmp_path / f"out{next(counter)}", **options)  # type: ignore[arg-type]

    return run
