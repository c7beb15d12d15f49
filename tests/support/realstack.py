"""The whole real cloud for the functional tier: Keystone + Glance + Cinder + Nova + network.

>>> with RealServices(tmp / "rs") as rs, RealStack(rs, tmp / "stack") as stack:
...     user = rs.create_project_user("images", "builder")
...     stack.write_clouds_yaml(tmp / "clouds.yaml", user)
...     ...  # osbuild build --os-cloud osbuild-real ...
...     assert stack.leftovers(keep_images={published_id}) == []

Keystone and Glance come from :class:`~tests.support.realservices.RealServices`; Cinder
from :class:`tests.support.realcinder.RealCinder` (its own process, file-backed volumes);
Nova from :class:`~tests.support.realnova.RealNova` (its own process, the simulated
Windows guest as virt driver, NeutronFixture's network ``private`` served as ``network``).
The simulator's stand-in install media are uploaded to Glance (public) under the names the
example specs use, and the simulator's flavors that Nova lacks are created.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osbuild_sim.media import seed_images
from osbuild_sim.world import SEED_FLAVORS
from tests.support.processes import Launcher, RealServicesError, peak_rss_mb
from tests.support.realnova import RealNova
from tests.support.realservices import ProjectUser, RealServices

REAL_CLOUD = "osbuild-real"
# Simulated guest seconds per real second on the real Nova (GuestDriver).
REAL_GUEST_SPEED = 600.0
# osbuild's --time-scale against the real stack: its waits and polls shrink by this much,
# but the services' own work does not (Cinder's qemu-img copy of an ISO takes a few real
# seconds, more than 30 min / 600), so builds use a smaller scale than the guest's pace.
REAL_TIME_SCALE = 60.0
# "module:attribute" of the Cinder launcher: a callable (rs, workdir) -> context manager
# with ``url``, the block-storage endpoint (and optionally ``timings``, ``process``).
CINDER_LAUNCHER_ENV = "OSBUILD_CINDER_LAUNCHER"
DEFAULT_CINDER_LAUNCHER = "tests.support.realcinder:RealCinder"


def cinder_launcher() -> Any:
    spec = os.environ.get(CINDER_LAUNCHER_ENV) or DEFAULT_CINDER_LAUNCHER
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RealServicesError(f"no Cinder launcher {spec}: {exc}") from None


def missing_cinder() -> str | None:
    """Why the real Cinder cannot be started here, or None."""
    try:
        cinder_launcher()
    except RealServicesError as exc:
        return str(exc)
    return None


@dataclass
class RealStack(Launcher):
    rs: RealServices
    workdir: Path
    speed: float = REAL_GUEST_SPEED
    cinder: Any = None
    nova: RealNova | None = None
    media: dict[str, str] = field(default_factory=dict)  # name -> Glance id
    # Nova's libvirt driver on this libvirtd instead of the simulated guest (the hypervisor
    # tier): Cinder hands out its files as ``gpfs`` connections (plain file disks).
    libvirt_uri: str | None = None
    instance_name_template: str = "instance-%08x"
    # Seeded media whose bytes come from a file instead (name -> path), e.g. a bootable
    # stand-in for the Windows ISO; the seed's name, format and properties are kept.
    media_files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    def start(self) -> None:
        began = time.monotonic()
        cinder_options = {"connection_type": "gpfs"} if self.libvirt_uri else {}
        self.cinder = self._exit.enter_context(
            cinder_launcher()(self.rs, self.workdir / "cinder", **cinder_options))
        self.timings["cinder"] = time.monotonic() - began
        nova_began = time.monotonic()
        self.nova = self._exit.enter_context(RealNova(
            self.rs, self.workdir / "nova", speed=self.speed,
            cinder_url=getattr(self.cinder, "url", None), libvirt_uri=self.libvirt_uri,
            instance_name_template=self.instance_name_template))
        self.timings["nova"] = time.monotonic() - nova_began
        self._seed()
        self.timings["stack"] = time.monotonic() - began

    def abandon_start(self) -> None:
        self._exit.close()

    def stop(self) -> None:
        try:
            if self.media:
                conn = self.rs.connect()
                for image_id in self.media.values():
                    conn.image.delete_image(image_id, ignore_missing=True)
                self.media.clear()
        finally:
            self._exit.close()

    def restart_nova(self, *, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start Nova again on the same port.
        Nova keeps its state in memory: it comes back empty, so the flavors are made again."""
        assert self.nova is not None
        if kill:
            self.nova.kill()
        self.nova.restart()
        self._seed_flavors()

    # ------------------------------------------------------------------ helpers for tests

    def connect(self, who: ProjectUser | None = None) -> Any:
        return self.rs.connect(who.auth(self.rs.auth_url) if who else None)

    def write_clouds_yaml(self, path: Path, who: ProjectUser,
                          cloud: str = REAL_CLOUD) -> Path:
        return self.rs.write_clouds_yaml(path, cloud, who.auth(self.rs.auth_url))

    def memory(self) -> dict[str, float | None]:
        """Peak RSS (MiB) of each service process."""
        out: dict[str, float | None] = {}
        for name, svc in (("keystone", self.rs.keystone), ("glance", self.rs.glance)):
            proc = getattr(svc, "process", None)
            out[name] = _tree_peak_rss(proc.pid) if proc and proc.poll() is None else None
        cinder_proc = getattr(self.cinder, "process", None)
        if cinder_proc is not None and cinder_proc.poll() is None:
            out["cinder"] = peak_rss_mb(cinder_proc.pid)
        else:
            peak_kb = getattr(self.cinder, "peak_rss_kb", None)
            out["cinder"] = peak_kb / 1024 if peak_kb else getattr(self.cinder, "peak_rss", None)
        if self.nova is not None:
            out["nova"] = self.nova.current_rss_mb() or self.nova.peak_rss
        return out

    def report(self) -> str:
        """One line with the start times and peak memory, for the test output."""
        times = {**self.rs.timings, **self.timings}
        if self.nova is not None:
            times["nova_setup_in_process"] = self.nova.timings.get("nova_setup", 0.0)
        parts = [f"{k} {v:.1f}s" for k, v in times.items()]
        parts += [f"{k} {v:.0f} MiB" for k, v in self.memory().items() if v is not None]
        return "real stack: " + ", ".join(parts)

    def leftovers(self, *, keep_images: set[str] | frozenset[str] = frozenset(),
                  users: list[ProjectUser] | tuple[ProjectUser, ...] = (),
                  baseline: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """What is left, seen as admin across all projects: servers, volumes, images other
        than the seeded media and ``keep_images``, and the ``users``' keypairs; ids in
        ``baseline`` (:meth:`resource_ids` before the test: other tests' images share this
        Glance) are not counted."""
        conn = self.rs.connect()
        found = [(s.id, f"server {s.name} {s.id} {s.status}")
                 for s in conn.compute.servers(details=True, all_projects=True)]
        found += [(v.id, f"volume {v.name} {v.id} {v.status}")
                  for v in conn.block_storage.volumes(details=True, all_projects=True)]
        skip = set(self.media.values()) | set(keep_images) | set(baseline)
        found += [(i.id, f"image {i.name} {i.id} {i.status}") for i in conn.image.images()]
        for user in users:
            found += [(f"keypair:{user.user_id}:{k.name}", f"keypair {k.name} of {user.user_name}")
                      for k in conn.compute.keypairs(user_id=user.user_id)]
        return [label for key, label in found if key not in skip]

    def resource_ids(self) -> frozenset[str]:
        """Ids of every server, volume and image now (a baseline for :meth:`leftovers`)."""
        conn = self.rs.connect()
        ids = {s.id for s in conn.compute.servers(all_projects=True)}
        ids |= {v.id for v in conn.block_storage.volumes(all_projects=True)}
        ids |= {i.id for i in conn.image.images()}
        return frozenset(ids)

    # ------------------------------------------------------------------ seeding

    def _seed(self) -> None:
        self._seed_flavors()
        conn = self.rs.connect()
        for seed in seed_images():
            source = self.media_files.get(seed.name)
            data = source.read_bytes() if source is not None else seed.data
            image = conn.image.create_image(
                name=seed.name, data=data, disk_format=seed.disk_format,
                container_format=seed.container_format, visibility="public",
                allow_duplicates=True, **{k: str(v) for k, v in seed.properties.items()})
            self.media[seed.name] = image.id

    def _seed_flavors(self) -> None:
        conn = self.rs.connect()
        existing = {f.name for f in conn.compute.flavors()}
        for name, vcpus, ram, disk in SEED_FLAVORS:
            if name not in existing:
                conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk,
                                           is_public=True)


def _tree_peak_rss(pid: int) -> float | None:
    """Sum of the peak RSS of a process and its children (uWSGI master, workers, router)."""
    total = peak_rss_mb(pid)
    if total is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += _tree_peak_rss(int(child)) or 0.0
    return total
