"""The simulated cloud's resources, as plain mutable records behind the world's lock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from osbuild_sim.console import ConsoleLog


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Flavor:
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    ephemeral: int = 0
    swap: int = 0


@dataclass
class Keypair:
    name: str
    public_key: str
    fingerprint: str
    type: str = "ssh"
    created_at: str = ""


@dataclass
class Image:
    id: str
    name: str
    status: str = "queued"
    disk_format: str | None = None
    container_format: str | None = None
    visibility: str = "shared"
    protected: bool = False
    os_hidden: bool = False
    min_disk: int = 0
    min_ram: int = 0
    properties: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    data: bytes | None = None
    owner: str = ""
    created_at: str = ""
    updated_at: str = ""
    seeded: bool = False
    # member project id -> {"status": pending|accepted|rejected, "created_at", "updated_at"}
    members: dict[str, dict[str, str]] = field(default_factory=dict)
    # checksum values are computed once the data is final
    checksum: str | None = None
    os_hash_value: str | None = None
    # A capture of a simulated disk: what Glance would store (the disk's non-zero blocks for
    # qcow2) and the disk's size; None for uploaded data (its length is its size).
    stored_size: int | None = None
    virtual_size: int | None = None


@dataclass
class Attachment:
    id: str
    volume_id: str
    server_id: str
    device: str
    attached_at: str


@dataclass
class Volume:
    id: str
    name: str
    size: int
    status: str = "creating"
    description: str | None = None
    volume_type: str = "__DEFAULT__"
    availability_zone: str = "nova"
    metadata: dict[str, str] = field(default_factory=dict)
    image_metadata: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    source_volid: str | None = None
    snapshot_id: str | None = None
    image_id: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    bootable: bool = False
    # set while Nova holds the volume for a server being built
    reserved_by: str | None = None


@dataclass
class Snapshot:
    id: str
    volume_id: str
    name: str
    size: int
    status: str = "available"
    created_at: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class UserMessage:
    id: str
    event_id: str
    user_message: str
    resource_uuid: str
    resource_type: str
    created_at: str
    message_level: str = "ERROR"


@dataclass
class Network:
    id: str
    name: str
    subnets: list[str] = field(default_factory=list)


@dataclass
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: str
    gateway_ip: str


@dataclass
class SecurityGroup:
    id: str
    name: str
    description: str = ""
    rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Port:
    id: str
    network_id: str
    mac_address: str
    fixed_ips: list[dict[str, str]]
    device_id: str = ""
    device_owner: str = ""
    status: str = "DOWN"
    name: str = ""
    security_groups: list[str] = field(default_factory=list)
    created_at: str = ""


@dataclass
class Mapping:
    """One normalised block_device_mapping_v2 entry, resolved to what it attaches."""

    boot_index: int | None
    source_type: str
    destination_type: str
    device_type: str
    disk_bus: str | None
    uuid: str | None
    volume_size: int | None
    delete_on_termination: bool
    volume_id: str | None = None  # the Cinder volume behind a destination_type=volume entry
    nova_created: bool = False


@dataclass
class ActionEvent:
    """One step of an instance action (nova/objects/instance_action.py InstanceActionEvent):
    a failure keeps the exception's message in ``details`` (shown to admins from 2.84) and
    its traceback (admins only)."""

    event: str
    start_time: str
    host: str | None = None
    finish_time: str | None = None
    result: str | None = None  # "Success" or "Error"
    details: str | None = None
    traceback: str | None = None


@dataclass
class InstanceAction:
    """What ``GET /servers/{id}/os-instance-actions`` lists: one per API request that acted
    on the server."""

    action: str
    request_id: str
    user_id: str
    project_id: str
    start_time: str
    updated_at: str
    message: str | None = None
    events: list[ActionEvent] = field(default_factory=list)

    def start_event(self, name: str, at: str, host: str | None) -> ActionEvent:
        event = ActionEvent(event=name, start_time=at, host=host)
        self.events.append(event)
        self.updated_at = at
        return event

    def finish_event(self, event: ActionEvent, at: str) -> None:
        """A success: the events the simulated Nova records all succeed (a failure would
        set its ``details``, its ``traceback`` and the action's message "Error": nova/db/
        main/api.py action_event_finish)."""
        event.finish_time = self.updated_at = at
        event.result = "Success"


@dataclass
class Server:
    id: str
    name: str
    flavor: Flavor
    image_id: str | None
    key_name: str | None
    metadata: dict[str, str]
    tags: list[str]
    mappings: list[Mapping]
    network_ids: list[str]
    security_groups: list[str]
    created_at: str
    status: str = "BUILD"
    vm_state: str = "building"
    task_state: str | None = "scheduling"
    power_state: int = 0
    host: str | None = None
    updated_at: str = ""
    launched_at: str | None = None
    fault: dict[str, Any] | None = None
    availability_zone: str = "nova"
    console: ConsoleLog = field(default_factory=ConsoleLog)
    password: str = ""
    local_disk: bytes | None = None  # image->local root disk
    scenario: Any = None  # GuestScenario chosen at create time
    user_data: bytes | None = None  # decoded; cloudbase-init reads it from the metadata
    config_drive: bool = False  # Nova attaches a config drive with the metadata and user data
    # the running guest: its event iterator, power-on time and the next event it yields
    guest: Iterator[Any] | None = None
    powered_on_at: float = 0.0
    # how far the guest's events run behind its power-on clock: a sysprep hold that waited
    # for its marker to be read (guest.AwaitConsoleRead)
    guest_delay: float = 0.0
    # while such a hold waits: the cloud times its marker was written and it ends at the latest
    holding: tuple[float, float] | None = None
    console_read_at: float | None = None  # the cloud time of the last console output read
    # the guest powered itself off; Nova shows SHUTOFF only after libvirt's event delay
    domain_off: bool = False
    next_event: Any = None
    guest_error: str | None = None
    boots: int = 0
    machine: Any = None  # the hypervisor.Machine of the current boot
    port_ids: list[str] = field(default_factory=list)
    actions: list[InstanceAction] = field(default_factory=list)
