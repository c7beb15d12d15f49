"""Finding a build's report.json from what an operator types: a path or a build id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from osbuild import naming
from osbuild.errors import InvalidInput
from osbuild.unattended.jobs import default_log_dir
from osbuild.unattended.state import BuildStatus, StateStore

REPORT_NAME = "report.json"


def find_report(what: str, *, state_dir: Path | None = None) -> Path:
    """``what``: a report.json, the folder holding one, or a build id (its state says where
    the build logged; else the default log folder beside the state)."""
    path = Path(what)
    if path.is_dir() and (path / REPORT_NAME).is_file():
        return path / REPORT_NAME
    if path.is_file():
        return path
    if not naming.is_build_id(what):
        raise InvalidInput([f"{what}: no such report file, and not a build id "
                            "like 20261126t031500-a1b2c3"])
    store = StateStore(state_dir)
    roots = []
    state = store.load(what) if store.exists(what) else None
    if state is not None and state.log_dir:
        roots.append(Path(state.log_dir))
    roots.append(default_log_dir(state_dir))
    for root in roots:
        candidate = root / what / REPORT_NAME
        if candidate.is_file():
            return candidate
    where = " or ".join(str(root / what) for root in dict.fromkeys(roots))
    if state is not None and state.status is BuildStatus.RUNNING:
        raise InvalidInput([f"build {what}: no {REPORT_NAME} yet: it is running (or its "
                            "orchestrator died: osbuild resume); the report is written when "
                            "it ends"])
    known = "" if state is not None else f" (and no state for it in {store.builds_dir})"
    raise InvalidInput([f"build {what}: no {REPORT_NAME} in {where}{known}"])


def spec_secrets(report: dict[str, Any]) -> list[str]:
    """The product key of the spec the build used, if that file is still readable: the page
    redacts it even where a guest printed it."""
    spec = (report.get("inputs") or {}).get("spec")
    if not spec:
        return []
    try:
        data = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
        key = data["windows"]["product_key"]
    except Exception:
        return []
    return [key] if isinstance(key, str) and key.lower() != "kms" else []
