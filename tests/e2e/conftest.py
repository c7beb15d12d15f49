"""Fixtures for driving `osbuild build` end to end against the simulated cloud."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from osbuild.cli import main
from osbuild.resources import examples_dir
from osbuild_sim import SimCloud
from osbuild_sim.media import cloudbase_msi_standin

SPEED = 600.0
# The simulated guests and data copies work 3x faster than on a real cloud (an install of
# about 20 simulated minutes instead of an hour) while the clock keeps its pace, so every wait
# keeps its margin; sysprep (1-2 simulated minutes here) still outlasts the longest console
# poll interval, so the watcher sees it start as it would on a real cloud.
WORK_PACE = 3.0
# Everything a build creates: the kinds /_sim/resources lists besides seeded images.
RESOURCE_KINDS = ("servers", "volumes", "images", "snapshots", "attachments", "ports",
                  "keypairs")


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class BuildRun:
    exit_code: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def why(self) -> str:
        """What went wrong, for assertion messages."""
        failed = self.named("build.failed")
        details = "\n".join(failed[-1].get("details", [failed[-1]["reason"]])) if failed else ""
        return f"{details}\n{self.stderr}".strip()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    @property
    def failure(self) -> dict[str, Any]:
        failed = self.named("build.failed")
        assert failed, f"no build.failed event; stderr: {self.stderr}"
        return failed[-1]

    @property
    def success(self) -> dict[str, Any]:
        done = self.named("build.succeeded")
        assert done, f"no build.succeeded event; stderr: {self.stderr}"
        return done[-1]


@dataclass
class Cloud:
    sim: SimCloud
    workdir: Path
    clouds_yaml: Path
    capsys: Any
    log_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_dir = self.workdir / "logs"

    def spec(self, example: str = "ws2022-standard.yaml", **changes: Any) -> Path:
        """An example spec copied beside a stand-in MSI, with `changes` deep-merged in."""
        data = yaml.safe_load((examples_dir() / example).read_text())
        data = deep_merge(data, changes)
        path = self.workdir / f"{data['name']}-{len(list(self.workdir.glob('*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        msi = self.workdir / "CloudbaseInitSetup_x64.msi"
        if not msi.exists():
            msi.write_bytes(cloudbase_msi_standin())
        return path

    def build(self, *specs: Path, extra: tuple[str, ...] = ()) -> BuildRun:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["build", *map(str, specs), "--os-cloud", self.sim.cloud_name,
                         "--log-dir", str(self.log_dir), "--json", *extra])
        events = [json.loads(line) for line in out.getvalue().splitlines()
                  if line.startswith("{")]
        return BuildRun(code, events, err.getvalue())

    def upload_iso(self, name: str, data: bytes, **properties: str) -> str:
        """A Windows or virtio-win ISO in the simulated Glance, as an operator uploads it."""
        conn = self.sim.connect()
        return str(conn.image.create_image(name=name, disk_format="iso", container_format="bare",
                                           data=data, **properties).id)

    def image_record(self, image_id: str) -> dict[str, Any]:
        """What the simulated guest left on the disk that became this image."""
        from osbuild_sim.guest import read_disk_record

        data = self.sim.connect().image.download_image(image_id).content
        record = read_disk_record(data)
        assert record is not None, f"image {image_id} holds no simulated Windows disk"
        return record

    def leftovers(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Everything in the cloud that osbuild created and should not be there."""
        resources = self.sim.resources()
        left = []
        for kind in RESOURCE_KINDS:
            for item in resources.get(kind, []):
                if item.get("seeded") or item.get("id") in keep:
                    continue
                left.append(f"{kind[:-1]} {item.get('name') or ''} {item.get('id')}")
        return left


@contextlib.contextmanager
def sim_cloud(workdir: Path, capsys: Any = None, speed: float = SPEED) -> Iterator[Cloud]:
    """A simulated cloud, with the environment pointing the CLI at it and state in ``workdir``."""
    with SimCloud(speed=speed, work_pace=WORK_PACE) as sim, \
            pytest.MonkeyPatch.context() as patch:
        clouds_yaml = sim.write_clouds_yaml(workdir / "clouds.yaml")
        patch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
        # Build state and family locks stay in the test's directory, not the user's.
        patch.setenv("XDG_STATE_HOME", str(workdir / "state"))
        for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN"):
            patch.delenv(var, raising=False)
        yield Cloud(sim, workdir, clouds_yaml, capsys)


@pytest.fixture
def cloud(tmp_path: Path, capsys: Any) -> Iterator[Cloud]:
    with sim_cloud(tmp_path, capsys) as made:
        yield made


class Built(NamedTuple):
    """An example built in a cloud of its own, for tests that only read what came out."""

    cloud: Cloud
    run: BuildRun


@pytest.fixture(scope="module")
def built_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Built]]:
    """``built_example(name)``: the example spec ``name`` built once per module (unchanged)."""
    with contextlib.ExitStack() as stack:
        done: dict[str, Built] = {}

        def build(example: str) -> Built:
            if example not in done:
                workdir = tmp_path_factory.mktemp(example.removesuffix(".yaml"))
                made = stack.enter_context(sim_cloud(workdir))
                done[example] = Built(made, made.build(made.spec(example)))
            return done[example]

        yield build
