"""Nova: servers, flavors, keypairs, zones and limits, as small typed records.

Reads, deletes and updates of a known resource are retried (osbuild/cloud/retry.py) on the
session's clock; creates are not (POST is not idempotent: callers look up before repeating).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openstack import exceptions as sdk_exc
from openstack.connection import Connection

from osbuild.cloud.clock import session_clock
from osbuild.cloud.retry import is_not_found, retrying, status_of


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str  # as Nova says it: ACTIVE, SHUTOFF, ERROR...
    fault: str = ""  # Nova's fault message (and code), "" when none
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: str | None = None
    image_id: str | None = None  # the image it booted from ("" or None: from a volume)


@dataclass(frozen=True)
class Flavor:
    id: str
    name: str
    ram: int  # MB
    disk: int  # GB of root disk; 0: volume-backed only
    vcpus: int


@dataclass(frozen=True)
class Keypair:
    name: str
    created_at: str | None = None


def fault_text(fault: Any) -> str:
    """Nova's ``fault`` ({code, message, details}) in one line, or "" when there is none."""
    fault = fault or {}
    message = fault.get("message") if isinstance(fault, dict) else str(fault)
    code = fault.get("code") if isinstance(fault, dict) else None
    if not message:
        return ""
    return f"{message} (code {code})" if code else str(message)


def _server(raw: Any) -> Server:
    image = getattr(raw, "image", None)
    image_id = image.get("id") if isinstance(image, dict) else getattr(image, "id", None)
    return Server(id=str(raw.id), name=str(raw.name or ""), status=str(raw.status or ""),
                  fault=fault_text(getattr(raw, "fault", None)),
                  metadata=dict(getattr(raw, "metadata", None) or {}),
                  created_at=getattr(raw, "created_at", None),
                  image_id=str(image_id) if image_id else None)


def _flavor(raw: Any) -> Flavor:
    return Flavor(id=str(raw.id), name=str(raw.name or ""), ram=int(raw.ram or 0),
                  disk=int(raw.disk or 0), vcpus=int(raw.vcpus or 0))


def get_server(conn: Connection, server_id: str, *,
               cancel: threading.Event | None = None) -> Server:
    return _server(retrying(conn.compute.get_server, server_id, clock=session_clock(conn),
                            cancel=cancel))


def servers(conn: Connection, *, tag: str | None = None, name: str | None = None,
            cancel: threading.Event | None = None) -> list[Server]:
    """The project's servers (with details), those tagged ``tag``, of exactly ``name``."""
    query: dict[str, Any] = {"details": True}
    if tag is not None:
        query["tags"] = tag
    found = retrying(lambda: list(conn.compute.servers(**query)), listing=True,
                     clock=session_clock(conn), cancel=cancel)
    return [_server(s) for s in found if name is None or s.name == name]


def create_server(conn: Connection, **args: Any) -> Server:
    """POST /servers once (``args`` as openstacksdk's create_server takes them)."""
    return _server(conn.compute.create_server(**args))


def set_server_metadata(conn: Connection, server_id: str,
                        metadata: Mapping[str, str]) -> None:
    """Merge ``metadata`` into the server's (other keys are kept), once: the heartbeat that
    uses it tries again at its next beat rather than holding up the watcher."""
    conn.compute.set_server_metadata(server_id, **metadata)


def delete_server_metadata(conn: Connection, server_id: str, keys: list[str]) -> None:
    """Remove ``keys`` from the server's metadata, once (like set_server_metadata)."""
    conn.compute.delete_server_metadata(server_id, keys)


def server_password(conn: Connection, server_id: str, *,
                    cancel: threading.Event | None = None,
                    refused_ok: bool = False) -> str | None:
    """What the guest posted to os-server-password (encrypted), or None. ``refused_ok``:
    None too when Nova answers with another error (a policy that refuses it, say), for a
    caller to whom the answer is a detail."""
    try:
        encrypted = retrying(conn.compute.get_server_password, server_id,
                             clock=session_clock(conn), cancel=cancel)
    except sdk_exc.HttpException as exc:
        if is_not_found(exc) or refused_ok:
            return None
        raise
    return str(encrypted) if encrypted else None


def create_server_image(conn: Connection, server_id: str, name: str,
                        metadata: Mapping[str, str]) -> str:
    """Nova createImage once; the new image's id."""
    return str(conn.compute.create_server_image(server_id, name, dict(metadata)).id)


@dataclass(frozen=True)
class ServerAction:
    """A server action as Nova recorded it (its instance actions)."""

    action: str  # createImage, stop...
    request_id: str  # what the cloud's admins look up in Nova's logs
    failed_events: tuple[str, ...] = ()  # compute_snapshot_instance...
    details: str = ""  # why they failed, where Nova shows it: to admins, from 2.84

    def why_failed(self, server_id: str) -> str:
        """For the error of an action that did not do its work: what Nova says, or where
        the cloud's admins find why. Nova 34 records a failed snapshot only as an instance
        fault, which it never shows on a server in SHUTOFF; releases before it also fail
        the action's compute event (nova/compute/manager.py snapshot_instance)."""
        request = f"Nova's {self.action} (request {self.request_id})"
        if self.failed_events and self.details:
            return f"{request} failed in {', '.join(self.failed_events)}: {self.details}"
        if self.failed_events:
            return (f"{request} failed in {', '.join(self.failed_events)}; the cloud's admins "
                    f"see why with `openstack server event show {server_id} "
                    f"{self.request_id}` or in nova-compute's log")
        return (f"Nova gives the project no reason; the cloud's admins find it in "
                f"nova-compute's log under {request}")


def last_action(conn: Connection, server_id: str, action: str, *,
                cancel: threading.Event | None = None) -> ServerAction | None:
    """The server's latest ``action`` with its failed events, or None (also where the
    instance actions cannot be read: an error message gains nothing from them then)."""
    clock = session_clock(conn)
    try:
        latest = next((a for a in retrying(lambda: list(conn.compute.server_actions(server_id)),
                                           clock=clock, cancel=cancel)
                       if a.action == action), None)
        if latest is None:
            return None
        # The events (2.51) and their details (2.84, admins) come with the action alone.
        shown = retrying(conn.compute.get_server_action, latest.request_id, server_id,
                         clock=clock, cancel=cancel)
    except sdk_exc.SDKException:
        return None
    failed = [e for e in shown.events or [] if str(e.result or "").lower() == "error"]
    details = "; ".join(dict.fromkeys(str(e.details) for e in failed if e.details))
    return ServerAction(action=action, request_id=str(shown.request_id or latest.request_id),
                        failed_events=tuple(str(e.event) for e in failed), details=details)


def find_flavor(conn: Connection, name_or_id: str, *,
                cancel: threading.Event | None = None) -> Flavor | None:
    raw = retrying(conn.compute.find_flavor, name_or_id, ignore_missing=True,
                   clock=session_clock(conn), cancel=cancel)
    return _flavor(raw) if raw is not None else None


def find_keypair(conn: Connection, name: str, *,
                 cancel: threading.Event | None = None) -> Keypair | None:
    raw = retrying(conn.compute.find_keypair, name, ignore_missing=True,
                   clock=session_clock(conn), cancel=cancel)
    return Keypair(str(raw.name), getattr(raw, "created_at", None)) if raw is not None else None


def create_keypair(conn: Connection, name: str, public_key: str) -> Keypair:
    """Import ``public_key`` once under ``name``."""
    raw = conn.compute.create_keypair(name=name, public_key=public_key)
    return Keypair(str(raw.name), getattr(raw, "created_at", None))


def keypairs(conn: Connection, *, cancel: threading.Event | None = None) -> list[Keypair]:
    found = retrying(lambda: list(conn.compute.keypairs()), clock=session_clock(conn),
                     cancel=cancel)
    return [Keypair(str(k.name or ""), getattr(k, "created_at", None)) for k in found]


def availability_zones(conn: Connection, *,
                       cancel: threading.Event | None = None) -> set[str] | None:
    """The zone names, or None where listing them is refused (Nova says at boot)."""
    try:
        zones = retrying(lambda: list(conn.compute.availability_zones()),
                         clock=session_clock(conn), cancel=cancel)
    except sdk_exc.HttpException:
        return None
    return {str(z.name) for z in zones}


def absolute_limits(conn: Connection, *,
                    cancel: threading.Event | None = None) -> dict[str, Any]:
    """Nova's absolute limits (``maxTotalInstances``, ``totalCoresUsed``...); {} if hidden."""
    return limits_of(lambda: conn.compute.get_limits(), conn, cancel)


# openstacksdk's AbsoluteLimits attribute names for the keys Nova and Cinder return.
_LIMIT_ATTRIBUTES = {
    "maxTotalInstances": "instances",
    "totalInstancesUsed": "instances_used",
    "maxTotalCores": "total_cores",
    "totalCoresUsed": "total_cores_used",
    "maxTotalRAMSize": "total_ram",
    "totalRAMUsed": "total_ram_used",
    "maxTotalVolumes": "max_total_volumes",
    "totalVolumesUsed": "total_volumes_used",
    "maxTotalVolumeGigabytes": "max_total_volume_gigabytes",
    "totalGigabytesUsed": "total_gigabytes_used",
}


def limits_of(fetch: Any, conn: Connection, cancel: threading.Event | None) -> dict[str, Any]:
    """A service's absolute limits keyed as the API names them; {} where the cloud does not
    show them."""
    try:
        limits = retrying(fetch, clock=session_clock(conn), cancel=cancel)
    except sdk_exc.HttpException as exc:
        if is_not_found(exc) or status_of(exc) in (403, 501):
            return {}
        raise
    absolute = getattr(limits, "absolute", None)
    if absolute is None:
        return {}
    raw = absolute.to_dict() if hasattr(absolute, "to_dict") else dict(absolute)
    for key, attribute in _LIMIT_ATTRIBUTES.items():
        if not isinstance(raw.get(key), int) and isinstance(raw.get(attribute), int):
            raw[key] = raw[attribute]
    return dict(raw)
