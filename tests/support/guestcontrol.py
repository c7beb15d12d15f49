"""How tests steer the guests of the real Nova: pace and per-server failure scenarios.

Shared by the test process (:mod:`tests.support.realnova`, which writes the control file)
and the Nova process (:mod:`tests.support.guestdriver`, which reads it at every spawn);
imports nothing of Nova.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from osbuild_sim.guest import GuestScenario

STATE_ENV = "OSBUILD_GUEST_STATE"
CONTROL_ENV = "OSBUILD_GUEST_CONTROL"
DEFAULT_SPEED = 600.0


def write_control(path: Path, *, speed: float, scenarios: dict[str, GuestScenario],
                  failing_snapshots: tuple[str, ...] = ()) -> None:
    """``{"speed": <simulated seconds per real second>, "scenarios": {<fnmatch pattern of
    server names>: {GuestScenario fields}}, "failing_snapshots": [<fnmatch pattern>]}``,
    replaced atomically."""
    doc = {
        "speed": speed,
        "scenarios": {k: dataclasses.asdict(v) for k, v in scenarios.items()},
        "failing_snapshots": list(failing_snapshots),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def read_control() -> tuple[float, dict[str, dict[str, Any]]]:
    path = os.environ.get(CONTROL_ENV)
    if not path or not Path(path).is_file():
        return DEFAULT_SPEED, {}
    doc = json.loads(Path(path).read_text())
    return float(doc.get("speed") or DEFAULT_SPEED), dict(doc.get("scenarios") or {})


def snapshot_fails(name: str) -> bool:
    """Whether createImage of the server ``name`` is to fail its upload to Glance."""
    path = os.environ.get(CONTROL_ENV)
    if not path or not Path(path).is_file():
        return False
    patterns = json.loads(Path(path).read_text()).get("failing_snapshots") or []
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def scenario_for(name: str, scenarios: dict[str, dict[str, Any]]) -> GuestScenario:
    """The first scenario whose pattern matches the server name, else the normal guest."""
    for pattern, fields in scenarios.items():
        if fnmatch.fnmatchcase(name, pattern):
            return GuestScenario(**fields)
    return GuestScenario()
