"""Fixtures for the lifecycle tests: one simulated cloud per module, the real CLI in-process."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuild.cli import main
from tests.e2e.conftest import WORK_PACE

SPEED = 600.0
EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "builds" / "ws2022-standard.yaml"
# Stands in for the password cloudbase-init generates, so tests can look for leaks.
KNOWN_PASSWORD = "Lifecycle-Secret-7f3a9c"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]

    def explain(self) -> str:
        """Why a build failed, for assertion messages."""
        failed = [e for e in self.events() if e["event"] in ("build.failed", "warning")]
        return "\n".join(str(e) for e in failed) + "\n" + self.err

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events() if e["event"] == name]
        assert found, f"no {name} event in: {self.out}\n{self.err}"
        return found[-1]


class Lifecycle:
    """Drives `osbuild` against one simulated cloud."""

    def __init__(self, sim: Any, root: Path) -> None:
        self.sim = sim
        self.root = root
        self.logs = root / "logs"
        self.conn = sim.connect()

    def cli(self, *argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return CliResult(code, out.getvalue(), err.getvalue())

    def spec(self, family: str, *, example: Path = EXAMPLE,
             **sections: dict[str, Any]) -> Path:
        """An example (Server 2022) as family ``family``, updates off, sections overridden."""
        data = yaml.safe_load(example.read_text(encoding="utf-8"))
        data["name"] = family
        data["updates"] = {"enabled": False}
        data["image"]["name"] = family + "-{build_id}"
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        folder = self.root / family
        folder.mkdir(exist_ok=True)
        from osbuild_sim.media import cloudbase_msi_standin

        (folder / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def build(self, spec: Path, *, json_lines: bool = True) -> CliResult:
        return self.cli("build", str(spec), "--os-cloud", self.sim.cloud_name,
                        *(["--json"] if json_lines else []),
                        "--log-dir", str(self.logs))

    def images(self, *argv: str) -> CliResult:
        return self.cli("images", *argv, "--os-cloud", self.sim.cloud_name)

    def family(self, family: str) -> list[dict[str, Any]]:
        result = self.images("--family", family, "--json")
        assert result.code == 0, result.err
        assert result.out.count("\n") == 1  # one JSON object per line, as every --json prints
        return json.loads(result.out)["images"]

    def image(self, image_id: str) -> Any:
        return self.conn.image.get_image(image_id)

    def leftovers(self) -> dict[str, list[Any]]:
        """Servers and keypairs of osbuild still in the cloud (the verify step's, say)."""
        state = self.sim.resources()
        return {
            "servers": [s for s in state["servers"] if "osbuild-" in s.get("name", "")],
            "volumes": [v for v in state["volumes"] if "osbuild-" in v.get("name", "")],
            "keypairs": [k for k in state["keypairs"]
                         if "osbuild-" in (k.get("name", "") if isinstance(k, dict) else k)],
        }


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    from osbuild_sim import SimCloud

    root = tmp_path_factory.mktemp("lifecycle")
    with SimCloud(speed=SPEED, work_pace=WORK_PACE) as sim, \
            pytest.MonkeyPatch.context() as patch:
        clouds = sim.write_clouds_yaml(root / "clouds.yaml")
        for key, value in sim.env(clouds).items():
            patch.setenv(key, value)
        # Build state and family locks stay in the test's directory, not the user's.
        patch.setenv("XDG_STATE_HOME", str(root / "state"))
        patch.setattr("osbuild_sim.guest.cloudbase_init_password", lambda: KNOWN_PASSWORD)
        yield Lifecycle(sim, root)
