"""Where tests keep files for people to look at after a run: screenshots, domain XML."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.processes import REPO_ROOT

ARTIFACTS_ENV = "OSBUILD_TEST_ARTIFACTS"


def artifacts_dir(kind: str) -> Path:
    """``$OSBUILD_TEST_ARTIFACTS/<kind>`` (default ``.artifacts/<kind>`` in the checkout,
    ignored by git), created; CI uploads the root."""
    folder = Path(os.environ.get(ARTIFACTS_ENV) or REPO_ROOT / ".artifacts") / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
