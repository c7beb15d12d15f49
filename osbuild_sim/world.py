"""The one in-memory world behind one lock; state machines advance lazily to `clock.now()`."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from osbuild_sim.clock import SimClock
from osbuild_sim.faults import Faults
from osbuild_sim.records import (
    Flavor,
    Image,
    Keypair,
    Network,
    Port,
    SecurityGroup,
    Server,
    Snapshot,
    Subnet,
    UserMessage,
    Volume,
    new_id,
)

log = logging.getLogger(__name__)

PROJECT_ID = "0a7f6e5d4c3b4a29a8b7c6d5e4f3a2b1"
PROJECT_NAME = "admin"
USER_ID = "9f8e7d6c5b4a49388271605f4e3d2c1b"
USER_NAME = "admin"
DOMAIN_ID = "default"

SEED_FLAVORS = (
    ("m1.small", 1, 2048, 20),
    ("m1.large", 4, 8192, 0),
    ("m1.large.40g", 4, 8192, 40),
    ("m1.xlarge", 8, 16384, 0),
)


class World:
    def __init__(self, clock: SimClock, faults: Faults, *, seed: bool = True,
                 work_pace: float = 1.0) -> None:
        if work_pace <= 0:
            raise ValueError("work_pace must be positive")
        self.clock = clock
        self.faults = faults
        # How many times faster than on a real cloud the slow work goes: the guests (install,
        # boot, sysprep) and the data copies (image to volume, volume to image, snapshots).
        # Tests that only need a finished build shorten it without speeding up the clock, so
        # every API wait keeps its real-time margin.
        self.work_pace = work_pace
        self.lock = threading.RLock()
        self.flavors: dict[str, Flavor] = {}
        self.keypairs: dict[str, Keypair] = {}
        self.images: dict[str, Image] = {}
        self.volumes: dict[str, Volume] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.messages: dict[str, UserMessage] = {}
        self.servers: dict[str, Server] = {}
        self.networks: dict[str, Network] = {}
        self.subnets: dict[str, Subnet] = {}
        self.ports: dict[str, Port] = {}
        self.security_groups: dict[str, SecurityGroup] = {}
        # Images nova-compute holds in its image cache (instances/_base; one host).
        self.image_cache: set[str] = set()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        # Set while advance() runs an event, so that what it schedules counts from its time.
        self._event_time: float | None = None
        if seed:
            self._seed()

    # -- time --------------------------------------------------------------------------------
    def now(self) -> float:
        """Simulated time; while a due event is processed, the time it was due at."""
        if self._event_time is not None:
            return self._event_time
        return self.clock.now()

    def stamp(self, at: float | None = None) -> str:
        return self.clock.timestamp(at)

    def schedule(
        self, delay: float, action: Callable[[], None], *, at: float | None = None
    ) -> None:
        """Run `action` (under the lock) once simulated time reaches now + delay."""
        when = (self.now() if at is None else at) + delay
        heapq.heappush(self._timers, (when, next(self._seq), action))

    def advance(self) -> None:
        """Bring every state machine and guest up to the current simulated time."""
        from osbuild_sim import machines

        with self.lock:
            now = self.clock.now()
            try:
                while True:
                    timer_at = self._timers[0][0] if self._timers else math.inf
                    server, guest_at = self._next_guest_event()
                    if min(timer_at, guest_at) > now:
                        return
                    if timer_at <= guest_at:
                        _, _, action = heapq.heappop(self._timers)
                        self._event_time = timer_at
                        action()
                    else:
                        assert server is not None
                        self._event_time = guest_at
                        machines.apply_next_guest_event(self, server)
            finally:
                self._event_time = None

    def _next_guest_event(self) -> tuple[Server | None, float]:
        best: Server | None = None
        best_at = math.inf
        for server in self.servers.values():
            if server.next_event is not None:
                at = self.guest_time(server, server.next_event.at)
                if at < best_at:
                    best, best_at = server, at
        return best, best_at

    def guest_time(self, server: Server, at: float) -> float:
        """When a guest event ``at`` seconds after the server's power-on happens."""
        return server.powered_on_at + server.guest_delay + at / self.work_pace

    # -- seed --------------------------------------------------------------------------------
    def _seed(self) -> None:
        from osbuild_sim.media import seed_images

        stamp = self.stamp(0.0)
        for index, (name, vcpus, ram, disk) in enumerate(SEED_FLAVORS, start=1):
            self.flavors[str(index)] = Flavor(str(index), name, vcpus, ram, disk)
        for seed_image in seed_images():
            image = Image(
                id=new_id(),
                name=seed_image.name,
                status="active",
                disk_format=seed_image.disk_format,
                container_format=seed_image.container_format,
                visibility="public",
                properties=dict(seed_image.properties),
                data=seed_image.data,
                owner=PROJECT_ID,
                created_at=stamp,
                updated_at=stamp,
                seeded=True,
            )
            from osbuild_sim.storage import finalize_image_data

            finalize_image_data(image)
            self.images[image.id] = image
        network = Network(new_id(), "private")
        subnet = Subnet(new_id(), "private-subnet", network.id, "10.0.0.0/24", "10.0.0.1")
        network.subnets.append(subnet.id)
        self.networks[network.id] = network
        self.subnets[subnet.id] = subnet
        group = SecurityGroup(new_id(), "default", "Default security group")
        group.rules = [
            {"id": new_id(), "direction": "egress", "ethertype": "IPv4", "protocol": None,
             "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
             "remote_group_id": None, "security_group_id": group.id},
            {"id": new_id(), "direction": "ingress", "ethertype": "IPv4", "protocol": None,
             "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
             "remote_group_id": group.id, "security_group_id": group.id},
        ]
        self.security_groups[group.id] = group

    # -- introspection -----------------------------------------------------------------------
    def resources(self) -> dict[str, Any]:
        """Every server, volume, image, snapshot, attachment, port and keypair, as JSON."""
        with self.lock:
            self.advance()
            return {
                "now": self.now(),
                "servers": [
                    {"id": s.id, "name": s.name, "status": s.status, "task_state": s.task_state,
                     "host": s.host, "tags": list(s.tags), "metadata": dict(s.metadata),
                     "fault": s.fault, "key_name": s.key_name, "image_id": s.image_id,
                     "volumes": [m.volume_id for m in s.mappings if m.volume_id],
                     "ports": list(s.port_ids), "guest_error": s.guest_error}
                    for s in self.servers.values()
                ],
                "volumes": [
                    {"id": v.id, "name": v.name, "status": v.status, "size": v.size,
                     "metadata": dict(v.metadata), "image_metadata": dict(v.image_metadata),
                     "attachments": [a.server_id for a in v.attachments], "bytes": len(v.data)}
                    for v in self.volumes.values()
                ],
                "images": [
                    {"id": i.id, "name": i.name, "status": i.status, "seeded": i.seeded,
                     "disk_format": i.disk_format, "visibility": i.visibility,
                     "os_hidden": i.os_hidden, "protected": i.protected, "tags": list(i.tags),
                     "properties": dict(i.properties), "size": len(i.data or b"")}
                    for i in self.images.values()
                ],
                "snapshots": [
                    {"id": s.id, "name": s.name, "volume_id": s.volume_id, "status": s.status}
                    for s in self.snapshots.values()
                ],
                "attachments": [
                    {"id": a.id, "volume_id": a.volume_id, "server_id": a.server_id,
                     "device": a.device}
                    for v in self.volumes.values() for a in v.attachments
                ],
                "ports": [
                    {"id": p.id, "network_id": p.network_id, "device_id": p.device_id,
                     "device_owner": p.device_owner, "status": p.status}
                    for p in self.ports.values()
                ],
                "keypairs": [{"id": k.name, "name": k.name, "fingerprint": k.fingerprint}
                             for k in self.keypairs.values()],
            }
