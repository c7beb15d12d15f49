"""Nova v2.1: flavors, keypairs, servers, actions, tags, metadata, consoles, quotas."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Response

from osbuild_sim import http, hypervisor, machines
from osbuild_sim.http import (
    ApiError,
    body_dict,
    empty,
    json_response,
    links,
    metadata_collection,
    microversioned_doc,
    route,
)
from osbuild_sim.records import InstanceAction, Keypair, Server, new_id
from osbuild_sim.world import PROJECT_ID, USER_ID

if TYPE_CHECKING:
    from osbuild_sim.app import Call
    from osbuild_sim.records import Flavor
    from osbuild_sim.world import World

V = "/compute/v2.1"
MAX_TAGS = 50
_TAG_RE = re.compile(r"^[^,/]{1,60}$")
_CONSOLE_ACTIONS = {
    "os-getVNCConsole": "vnc",
    "os-getSPICEConsole": "spice",
    "os-getSerialConsole": "serial",
    "os-getRDPConsole": "rdp",
}


# -- discovery ---------------------------------------------------------------------------------
def _version_doc(base_url: str) -> dict[str, Any]:
    return microversioned_doc(base_url, V, ident="v2.1", version="2.100", min_version="2.1",
                              updated="2013-07-23T11:33:21Z",
                              media_type="application/vnd.openstack.compute+json;version=2.1")


def versions(call: Call) -> Response:
    legacy = {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
              "updated": "2011-01-21T11:33:21Z",
              "links": [{"rel": "self", "href": f"{call.base_url}/compute/v2/"}]}
    return json_response({"versions": [legacy, _version_doc(call.base_url)]}, 300)


def version(call: Call) -> Response:
    return json_response({"version": _version_doc(call.base_url)})


# -- flavors -----------------------------------------------------------------------------------
def _flavor_ref(call: Call, flavor: Flavor) -> dict[str, Any]:
    return {"id": flavor.id, "name": flavor.name,
            "links": [{"rel": "self", "href": f"{call.base_url}{V}/flavors/{flavor.id}"}]}


def _flavor(call: Call, flavor: Flavor) -> dict[str, Any]:
    body = _flavor_ref(call, flavor)
    body.update({"vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk,
                 "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral,
                 "swap": flavor.swap if call.at_least(2, 75) else (flavor.swap or ""),
                 "rxtx_factor": 1.0, "os-flavor-access:is_public": True,
                 "OS-FLV-DISABLED:disabled": False})
    if call.at_least(2, 55):
        body["description"] = None
    if call.at_least(2, 61):
        body["extra_specs"] = {}
    return body


def _find_flavor(world: World, flavor_id: str) -> Flavor:
    flavor = world.flavors.get(str(flavor_id))
    if flavor is None:
        raise ApiError(404, f"Flavor {flavor_id} could not be found.")
    return flavor


def list_flavors(call: Call) -> Response:
    flavors = sorted(call.world.flavors.values(), key=lambda f: int(f.id))
    return json_response({"flavors": [_flavor_ref(call, f) for f in flavors]})


def list_flavors_detail(call: Call) -> Response:
    flavors = sorted(call.world.flavors.values(), key=lambda f: int(f.id))
    return json_response({"flavors": [_flavor(call, f) for f in flavors]})


def show_flavor(call: Call, flavor_id: str) -> Response:
    return json_response({"flavor": _flavor(call, _find_flavor(call.world, flavor_id))})


def flavor_extra_specs(call: Call, flavor_id: str) -> Response:
    _find_flavor(call.world, flavor_id)
    return json_response({"extra_specs": {}})


# -- keypairs ----------------------------------------------------------------------------------
def _fingerprint(public_key: str) -> str:
    parts = public_key.strip().split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise ApiError(400, "Keypair data is invalid: failed to generate fingerprint")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise ApiError(400, "Keypair data is invalid: failed to generate fingerprint") from exc
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _keypair(call: Call, key: Keypair, *, full: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": key.name, "public_key": key.public_key,
                            "fingerprint": key.fingerprint}
    if call.at_least(2, 2):
        body["type"] = key.type
    if full:
        body.update({"user_id": USER_ID, "created_at": key.created_at, "deleted": False,
                     "deleted_at": None, "updated_at": None, "id": abs(hash(key.name)) % 10**6})
    return body


def list_keypairs(call: Call) -> Response:
    keys = sorted(call.world.keypairs.values(), key=lambda k: k.name)
    return json_response({"keypairs": [{"keypair": _keypair(call, k)} for k in keys]})


def create_keypair(call: Call) -> Response:
    body = body_dict(call.json(), "keypair")
    name = body.get("name")
    if not isinstance(name, str) or not re.match(r"^[\w\-. @]{1,255}$", name):
        raise ApiError(400, "Keypair data is invalid: Keypair name contains unsafe characters")
    world = call.world
    if name in world.keypairs:
        raise ApiError(409, f"Key pair '{name}' already exists.")
    limit = world.faults.quota("compute", "key_pairs")
    if limit >= 0 and len(world.keypairs) >= limit:
        raise ApiError(403, "Quota exceeded, too many key pairs.")
    private_key = None
    public_key = body.get("public_key")
    if public_key is None:
        if call.at_least(2, 92):
            raise ApiError(400, "Invalid input for field/attribute keypair. Value: "
                                f"{body}. 'public_key' is a required property")
        # Before 2.92 Nova generates the key pair and returns the private key once.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_key = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()).decode()
        public_key = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode() + " Generated-by-Nova"
    keypair = Keypair(name=name, public_key=public_key, fingerprint=_fingerprint(public_key),
                      type=body.get("type", "ssh"), created_at=world.stamp())
    world.keypairs[name] = keypair
    answer = _keypair(call, keypair)
    answer["user_id"] = USER_ID
    if private_key is not None:
        answer["private_key"] = private_key
    return json_response({"keypair": answer}, 201 if call.at_least(2, 2) else 200)


def _find_keypair(world: World, name: str) -> Keypair:
    key = world.keypairs.get(name)
    if key is None:
        raise ApiError(404, f"Keypair {name} not found for user {USER_ID}")
    return key


def show_keypair(call: Call, name: str) -> Response:
    return json_response({"keypair": _keypair(call, _find_keypair(call.world, name), full=True)})


def delete_keypair(call: Call, name: str) -> Response:
    _find_keypair(call.world, name)
    del call.world.keypairs[name]
    return empty(204 if call.at_least(2, 2) else 202)


# -- servers -----------------------------------------------------------------------------------
def find_server(world: World, server_id: str) -> Server:
    server = world.servers.get(server_id)
    if server is None:
        raise ApiError(404, f"Instance {server_id} could not be found.")
    return server


def _server_links(call: Call, server: Server) -> list[dict[str, str]]:
    return links(call, V, "/compute", f"servers/{server.id}")


def _addresses(world: World, server: Server) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for port_id in server.port_ids:
        port = world.ports.get(port_id)
        if port is None:
            continue
        network = world.networks.get(port.network_id)
        for ip in port.fixed_ips:
            out.setdefault(network.name if network else port.network_id, []).append(
                {"version": 4, "addr": ip["ip_address"], "OS-EXT-IPS:type": "fixed",
                 "OS-EXT-IPS-MAC:mac_addr": port.mac_address})
    return out


# Only these show "progress" (nova/api/openstack/compute/views/servers.py ViewBuilder).
_PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")


def _host_id(host: str | None) -> str:
    """Nova's obfuscated host id (nova/utils.py generate_hostid): per project."""
    return hashlib.sha224((PROJECT_ID + host).encode()).hexdigest() if host else ""


def _server(call: Call, server: Server, *, in_list: bool = False) -> dict[str, Any]:
    world = call.world
    host_id = _host_id(server.host)
    flavor = server.flavor
    if call.at_least(2, 47):
        flavor_body: dict[str, Any] = {"vcpus": flavor.vcpus, "ram": flavor.ram,
                                       "disk": flavor.disk, "ephemeral": flavor.ephemeral,
                                       "swap": flavor.swap, "original_name": flavor.name,
                                       "extra_specs": {}}
    else:
        flavor_body = {"id": flavor.id, "links": _flavor_ref(call, flavor)["links"]}
    image: Any = ""
    if server.image_id:
        image = {"id": server.image_id, "links": [
            {"rel": "bookmark", "href": f"{call.base_url}/compute/images/{server.image_id}"}]}
    # delete_on_termination from 2.3 (views/servers.py ViewBuilder._add_volumes_attachments).
    volumes = [{"id": m.volume_id, "delete_on_termination": m.delete_on_termination}
               if call.at_least(2, 3) else {"id": m.volume_id}
               for m in server.mappings if m.volume_id]
    body: dict[str, Any] = {
        "id": server.id, "name": server.name, "status": server.status,
        "tenant_id": PROJECT_ID, "user_id": USER_ID, "metadata": dict(server.metadata),
        "hostId": host_id, "image": image, "flavor": flavor_body,
        "created": server.created_at, "updated": server.updated_at or server.created_at,
        "addresses": _addresses(world, server), "accessIPv4": "", "accessIPv6": "",
        "links": _server_links(call, server), "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": server.availability_zone,
        "config_drive": "True" if server.config_drive else "", "key_name": server.key_name,
        "OS-SRV-USG:launched_at": server.launched_at, "OS-SRV-USG:terminated_at": None,
        "OS-EXT-STS:task_state": server.task_state, "OS-EXT-STS:vm_state": server.vm_state,
        "OS-EXT-STS:power_state": server.power_state,
        "os-extended-volumes:volumes_attached": volumes,
        "security_groups": [{"name": g} for g in server.security_groups],
    }
    body.update(_extended_attributes(call, server))
    if server.status in _PROGRESS_STATUSES:
        body["progress"] = 0
    if server.fault is not None and server.status == "ERROR":
        body["fault"] = dict(server.fault)
    if call.at_least(2, 9):
        body["locked"] = False
    if call.at_least(2, 19):
        body["description"] = None
    if call.at_least(2, 26):
        body["tags"] = list(server.tags)
    if call.at_least(2, 16) and call.is_admin:
        # Policy os_compute_api:servers:show:host_status (and its unknown-only variant)
        # is admin-only (nova/policies/servers.py).
        body["host_status"] = "UP" if server.host else ""
    if call.at_least(2, 63):
        body["trusted_image_certificates"] = None
    if call.at_least(2, 71) and not in_list:
        # Nova shows a server's groups on GET /servers/{id}, not in the detail list.
        body["server_groups"] = []
    if call.at_least(2, 73):
        body["locked_reason"] = None
    if call.at_least(2, 96):
        body["pinned_availability_zone"] = None
    if call.at_least(2, 100):
        body["scheduler_hints"] = {}
    return body


def _extended_attributes(call: Call, server: Server) -> dict[str, Any]:
    """The OS-EXT-SRV-ATTR fields: only for tokens passing os_compute_api:os-extended-server-
    attributes, admin-only by default (nova/policies/extended_server_attributes.py, checked in
    nova/api/openstack/compute/views/servers.py ViewBuilder.show); from 2.90 everyone sees
    the hostname."""
    hostname = server.name.lower().replace("_", "-")[:63]
    if not call.is_admin:
        return {"OS-EXT-SRV-ATTR:hostname": hostname} if call.at_least(2, 90) else {}
    attributes: dict[str, Any] = {
        "OS-EXT-SRV-ATTR:host": server.host,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": server.host,
        "OS-EXT-SRV-ATTR:instance_name": f"instance-{abs(hash(server.id)) % 0xFFFFFFFF:08x}",
    }
    if call.at_least(2, 3):
        attributes.update({
            "OS-EXT-SRV-ATTR:hostname": hostname,
            "OS-EXT-SRV-ATTR:reservation_id": f"r-{server.id[:8]}",
            "OS-EXT-SRV-ATTR:launch_index": 0,
            "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:ramdisk_id": "",
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda" if server.host else None,
            "OS-EXT-SRV-ATTR:user_data": None,
        })
    return attributes


def _bad_create(message: str) -> ApiError:
    return ApiError(400, message)


def _networks(world: World, call: Call, raw: Any) -> list[str]:
    if raw is None:
        if call.at_least(2, 37):
            raise _bad_create("Invalid input for field/attribute server. Value: {...}. "
                              "'networks' is a required property")
        raw = "auto"
    if raw == "none":
        return []
    private = next(iter(world.networks.values()))
    if raw == "auto":
        return [private.id]
    if not isinstance(raw, list):
        raise _bad_create("Invalid input for field/attribute networks. Value: "
                          f"{raw}. {raw!r} is not of type 'array'")
    ids = []
    for entry in raw:
        uuid = entry.get("uuid") if isinstance(entry, dict) else None
        if "port" in (entry or {}):
            raise _bad_create("Pre-created ports are not supported by the simulated cloud.")
        if uuid not in world.networks:
            raise _bad_create(f"Network {uuid} could not be found.")
        ids.append(uuid)
    return ids


def create_server(call: Call) -> Response:
    world = call.world
    body = body_dict(call.json(), "server")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise _bad_create("Invalid input for field/attribute name. Value: "
                          f"{name}. 'name' is a required property")
    if "tags" in body and not call.at_least(2, 52):
        raise _bad_create("Invalid input for field/attribute server. Value: {...}. Additional "
                          "properties are not allowed ('tags' was unexpected)")
    tags = body.get("tags") or []
    if len(tags) > MAX_TAGS or not all(isinstance(t, str) and _TAG_RE.match(t) for t in tags):
        raise _bad_create(f"Invalid input for field/attribute tags. Value: {tags}.")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) and len(k) <= 255 and len(v) <= 255 for k, v in metadata.items()
    ):
        raise _bad_create("Invalid input for field/attribute metadata. Value: "
                          f"{metadata}. metadata values must be strings")
    flavor = world.flavors.get(str(body.get("flavorRef", "")).rsplit("/", 1)[-1])
    if flavor is None:
        raise _bad_create(f"Flavor {body.get('flavorRef')} could not be found.")
    image_ref = str(body.get("imageRef") or "").rsplit("/", 1)[-1] or None
    image = None
    if image_ref:
        image = world.images.get(image_ref)
        if image is None:
            raise _bad_create(f"Image {image_ref} could not be found.")
        if image.status != "active":
            raise _bad_create(f"Image {image_ref} is not active.")
    key_name = body.get("key_name")
    if key_name is not None and key_name not in world.keypairs:
        raise _bad_create("Invalid key_name provided.")
    raw_bdms = body.get("block_device_mapping_v2") or []
    if not isinstance(raw_bdms, list) or not all(isinstance(b, dict) for b in raw_bdms):
        raise _bad_create("Invalid input for field/attribute block_device_mapping_v2.")
    if not raw_bdms and image_ref:
        # A plain boot from an image: Nova makes the image the local root disk itself.
        raw_bdms = [{"boot_index": 0, "source_type": "image", "destination_type": "local",
                     "uuid": image_ref, "delete_on_termination": True}]
    try:
        hypervisor.check_mappings(raw_bdms, image_ref)
    except hypervisor.MappingError as exc:
        raise ApiError(getattr(exc, "status", 400), str(exc)) from exc
    for entry in raw_bdms:
        if entry.get("source_type") == "image" and entry.get("uuid") not in world.images:
            raise _bad_create(f"Block Device Mapping is Invalid: failed to get image "
                              f"{entry.get('uuid')}.")
    mappings = machines.normalise_mappings(raw_bdms)
    root = next((m for m in mappings if m.boot_index == 0), None)
    if not image_ref and root is not None and root.source_type == "volume":
        machines.check_root_volume_bootable(world, root)
    if root is not None and root.destination_type == "local" and root.source_type == "image":
        root_image = world.images[root.uuid or ""]
        if flavor.disk == 0:
            raise ApiError(403, "Only volume-backed servers are allowed for flavors with zero "
                                "disk.")
        needed = max(root_image.min_disk, -(-len(root_image.data or b"") // 1024**3))
        if needed > flavor.disk:
            raise _bad_create("Flavor's disk is too small for requested image. Flavor disk is "
                              f"{flavor.disk * 1024**3} bytes, image is "
                              f"{len(root_image.data or b'')} bytes.")
    if flavor.ram < _boot_min_ram(world, image_ref, root):
        raise _bad_create("Flavor's memory is too small for requested image.")
    groups = [g.get("name") for g in body.get("security_groups") or [{"name": "default"}]]
    known = {g.name for g in world.security_groups.values()}
    for group in groups:
        if group not in known:
            raise _bad_create(f"Security group {group} not found for project {PROJECT_ID}.")
    network_ids = _networks(world, call, body.get("networks"))
    user_data = _user_data(body.get("user_data"))
    config_drive = _config_drive(body.get("config_drive"))
    machines.check_compute_quota(world, flavor)
    scenario = world.faults.take("guest", name)
    server = Server(id=new_id(), name=name, flavor=flavor, image_id=image_ref,
                    key_name=key_name, metadata=dict(metadata), tags=list(dict.fromkeys(tags)),
                    mappings=mappings, network_ids=network_ids, security_groups=groups,
                    created_at=world.stamp(), scenario=scenario.scenario if scenario else None)
    server.user_data = user_data
    server.config_drive = config_drive
    if root is not None and root.source_type == "image" and root.destination_type == "local":
        server.local_disk = world.images[root.uuid or ""].data or b""
    machines.reserve_volumes(world, server)
    world.servers[server.id] = server
    _record_action(call, server, "create")
    machines.start_build(world, server)
    answer = {"id": server.id, "links": _server_links(call, server),
              "OS-DCF:diskConfig": "MANUAL",
              "security_groups": [{"name": g} for g in groups],
              "adminPass": secrets.token_urlsafe(9)}
    return json_response({"server": answer}, 202,
                         {"Location": f"{call.base_url}{V}/servers/{server.id}"})


def _boot_min_ram(world: World, image_ref: str | None, root: Any) -> int:
    """The boot image's min_ram as Nova checks it against the flavor's RAM (nova/compute/
    api.py ``_validate_flavor_image_nostatus``): the imageRef's, else the root mapping's
    image, else the root volume's ``volume_image_metadata`` (nova/block_device.py
    ``get_bdm_image_metadata``, ``get_image_metadata_from_volume``)."""
    source = image_ref or (root.uuid if root is not None and root.source_type == "image"
                           else None)
    if source:
        image = world.images.get(source)
        return image.min_ram if image is not None else 0
    if root is not None and root.source_type == "volume":
        volume = world.volumes.get(root.uuid or "")
        if volume is not None:
            return int(volume.image_metadata.get("min_ram") or 0)
    return 0


def _split(values: list[str]) -> set[str]:
    return {t for v in values for t in v.split(",") if t}


def _filtered_servers(call: Call) -> list[Server]:
    args = call.request.args
    servers = list(call.world.servers.values())
    if "name" in args:
        pattern = args["name"]
        servers = [s for s in servers if re.search(pattern, s.name)]
    if "status" in args:
        servers = [s for s in servers if s.status == args["status"].upper()]
    for key, test in (
        ("tags", lambda want, have: want <= have),
        ("tags-any", lambda want, have: bool(want & have)),
        ("not-tags", lambda want, have: not want <= have),
        ("not-tags-any", lambda want, have: not want & have),
    ):
        if key in args:
            want = _split(args.getlist(key))
            servers = [s for s in servers if test(want, set(s.tags))]
    if "image" in args:
        servers = [s for s in servers if s.image_id == args["image"]]
    if "flavor" in args:
        servers = [s for s in servers if s.flavor.id == args["flavor"]]
    if "uuid" in args:
        servers = [s for s in servers if s.id == args["uuid"]]
    servers.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    if "marker" in args:
        ids = [s.id for s in servers]
        if args["marker"] not in ids:
            raise ApiError(400, f"marker [{args['marker']}] not found")
        servers = servers[ids.index(args["marker"]) + 1:]
    if "limit" in args:
        servers = servers[: int(args["limit"])]
    return servers


def list_servers(call: Call) -> Response:
    return json_response({"servers": [
        {"id": s.id, "name": s.name, "links": _server_links(call, s)}
        for s in _filtered_servers(call)]})


def list_servers_detail(call: Call) -> Response:
    return json_response({"servers": [_server(call, s, in_list=True)
                                       for s in _filtered_servers(call)]})


def show_server(call: Call, server_id: str) -> Response:
    return json_response({"server": _server(call, find_server(call.world, server_id))})


def update_server(call: Call, server_id: str) -> Response:
    server = find_server(call.world, server_id)
    body = body_dict(call.json(), "server")
    if "name" in body:
        server.name = str(body["name"])
    server.updated_at = call.world.stamp()
    return json_response({"server": _server(call, server)})


def delete_server(call: Call, server_id: str) -> Response:
    machines.delete(call.world, find_server(call.world, server_id))
    return empty(204)


def server_action(call: Call, server_id: str) -> Response:
    world = call.world
    server = find_server(world, server_id)
    body = call.json()
    if not isinstance(body, dict) or len(body) != 1:
        raise ApiError(400, "Malformed request body")
    action, args = next(iter(body.items()))
    if action == "os-getConsoleOutput":
        length = (args or {}).get("length")
        if length is not None:
            try:
                length = int(length)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, "Invalid input for field/attribute length. Value: "
                                    f"{length}.") from exc
            if length < -1:
                raise ApiError(400, f"Invalid input for field/attribute length. Value: {length}."
                                    " -2 is less than the minimum of -1")
            if length == -1:
                length = None
        return json_response({"output": machines.console_output(world, server, length)})
    if action == "os-stop":
        machines.stop(world, server)
        _record_action(call, server, "stop", "compute_stop_instance")
        return empty(202)
    if action == "os-start":
        machines.start(world, server)
        _record_action(call, server, "start", "compute_start_instance")
        return empty(202)
    if action == "createImage":
        args = body_dict(args)
        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Invalid input for field/attribute name.")
        image_id = machines.create_image(world, server, name, dict(args.get("metadata") or {}),
                                         action=_record_action(call, server, "createImage"))
        location = {"Location": f"{call.base_url}/image/v2/images/{image_id}"}
        if call.at_least(2, 45):
            return json_response({"image_id": image_id}, 202)
        return empty(202, location)
    if action in _CONSOLE_ACTIONS:
        kind = (args or {}).get("type", "novnc")
        return json_response({"console": {"type": kind, "url": _console_url(call, server, kind)}})
    raise ApiError(400, f"There is no such action: {action}")


def _record_action(call: Call, server: Server, action: str,
                   succeeded: str | None = None) -> InstanceAction:
    """The instance action a request starts (nova/compute/api.py record_action_start);
    ``succeeded``: the compute event that finished it at once."""
    at = call.world.stamp()
    user = call.token.user_id if call.token is not None else USER_ID
    record = InstanceAction(action=action, request_id=call.request_id, user_id=user,
                            project_id=PROJECT_ID, start_time=at, updated_at=at)
    server.actions.append(record)
    if succeeded is not None:
        record.finish_event(record.start_event(succeeded, at, server.host), at)
    return record


def _action_body(call: Call, server: Server, record: InstanceAction) -> dict[str, Any]:
    body = {"action": record.action, "instance_uuid": server.id,
            "request_id": record.request_id, "user_id": record.user_id,
            "project_id": record.project_id, "start_time": record.start_time,
            "message": record.message}
    if call.at_least(2, 58):
        body["updated_at"] = record.updated_at
    return body


def instance_actions(call: Call, server_id: str) -> Response:
    """Newest first, as Nova lists them (nova/db/main/api.py actions_get). A deleted
    server's actions are gone here; Nova keeps them for 2.21 and later."""
    server = find_server(call.world, server_id)
    return json_response({"instanceActions": [
        _action_body(call, server, record) for record in reversed(server.actions)]})


def instance_action(call: Call, server_id: str, request_id: str) -> Response:
    """One action with its events, as nova/api/openstack/compute/instance_actions.py show
    gives them: to the owner from 2.51 without the traceback; to an admin with the
    traceback, the host from 2.62 and the failure's ``details`` from 2.84."""
    server = find_server(call.world, server_id)
    record = next((a for a in server.actions if a.request_id == request_id), None)
    if record is None:
        raise ApiError(404, f"Action {request_id} not found")
    body = _action_body(call, server, record)
    admin = call.is_admin
    if admin or call.at_least(2, 51):
        events = []
        for event in record.events:
            shown: dict[str, Any] = {"event": event.event, "start_time": event.start_time,
                                     "finish_time": event.finish_time, "result": event.result}
            if admin:
                shown["traceback"] = event.traceback
                if call.at_least(2, 62):
                    shown["host"] = event.host
            if call.at_least(2, 62):
                shown["hostId"] = _host_id(event.host)
            if admin and call.at_least(2, 84):
                shown["details"] = event.details
            events.append(shown)
        body["events"] = events
    return json_response({"instanceAction": body})


def _console_url(call: Call, server: Server, kind: str) -> str:
    if server.status != "ACTIVE":
        raise ApiError(409, f"Instance {server.id} is not ready")
    token = secrets.token_hex(16)
    return f"{call.base_url}/_sim/console/{kind}?token={token}&server={server.id}"


def remote_console(call: Call, server_id: str) -> Response:
    server = find_server(call.world, server_id)
    body = body_dict(call.json(), "remote_console")
    protocol, kind = body.get("protocol", "vnc"), body.get("type", "novnc")
    return json_response({"remote_console": {"protocol": protocol, "type": kind,
                                             "url": _console_url(call, server, kind)}})


def server_password(call: Call, server_id: str) -> Response:
    server = find_server(call.world, server_id)
    if call.request.method == "DELETE":
        server.password = ""
        return empty(204)
    return json_response({"password": server.password})


# -- server metadata and tags ------------------------------------------------------------------
def _string_values(entries: dict[str, Any]) -> dict[str, str]:
    if not all(isinstance(v, str) for v in entries.values()):
        raise ApiError(400, "Invalid input for field/attribute metadata.")
    return dict(entries)


def metadata(call: Call, server_id: str) -> Response:
    return metadata_collection(call, find_server(call.world, server_id), _string_values)


def metadata_item(call: Call, server_id: str, key: str) -> Response:
    def one_value(meta: dict[str, Any]) -> dict[str, str]:
        if list(meta) != [key]:
            raise ApiError(400, "Request body and URI mismatch")
        return {key: str(meta[key])}

    return http.metadata_item(call, find_server(call.world, server_id), key, one_value,
                              missing="Metadata item was not found", deleted=204)


def tags(call: Call, server_id: str) -> Response:
    server = find_server(call.world, server_id)
    method = call.request.method
    if method == "PUT":
        new = call.json().get("tags")
        if not isinstance(new, list) or len(new) > MAX_TAGS:
            raise ApiError(400, "Invalid input for field/attribute tags.")
        server.tags = list(dict.fromkeys(new))
    elif method == "DELETE":
        server.tags = []
        return empty(204)
    return json_response({"tags": list(server.tags)})


def tag(call: Call, server_id: str, tag_name: str) -> Response:
    server = find_server(call.world, server_id)
    method = call.request.method
    if method == "PUT":
        if not _TAG_RE.match(tag_name):
            raise ApiError(400, f"Tag '{tag_name}' is invalid.")
        if tag_name in server.tags:
            return empty(204)
        if len(server.tags) >= MAX_TAGS:
            raise ApiError(400, f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        server.tags.append(tag_name)
        return empty(201, {"Location": f"{call.base_url}{V}/servers/{server.id}/tags/{tag_name}"})
    if tag_name not in server.tags:
        raise ApiError(404, f"Tag {tag_name} could not be found.")
    if method == "DELETE":
        server.tags.remove(tag_name)
    return empty(204)


def volume_attachments(call: Call, server_id: str) -> Response:
    server = find_server(call.world, server_id)
    out = []
    for volume in call.world.volumes.values():
        for att in volume.attachments:
            if att.server_id == server.id:
                out.append({"id": volume.id, "volumeId": volume.id, "serverId": server.id,
                            "device": att.device})
    return json_response({"volumeAttachments": out})


# -- limits and quotas -------------------------------------------------------------------------
def _usage(world: World) -> dict[str, int]:
    live = list(world.servers.values())
    return {"instances": len(live), "cores": sum(s.flavor.vcpus for s in live),
            "ram": sum(s.flavor.ram for s in live), "key_pairs": len(world.keypairs)}


def limits(call: Call) -> Response:
    world = call.world
    quota = world.faults.quotas["compute"]
    used = _usage(world)
    absolute = {
        "maxTotalInstances": quota["instances"], "maxTotalCores": quota["cores"],
        "maxTotalRAMSize": quota["ram"], "maxTotalKeypairs": quota["key_pairs"],
        "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5,
        "maxPersonalitySize": 10240, "maxServerGroups": 10, "maxServerGroupMembers": 10,
        "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"], "totalServerGroupsUsed": 0,
    }
    return json_response({"limits": {"rate": [], "absolute": absolute}})


def quota_set(call: Call, project_id: str, detail: bool = False) -> Response:
    world = call.world
    if call.request.method == "PUT":
        _update_quotas(call, project_id)
    quota = world.faults.quotas["compute"]
    used = _usage(world)
    body: dict[str, Any] = {"id": project_id, "metadata_items": 128, "server_groups": 10,
                            "server_group_members": 10}
    for key in ("instances", "cores", "ram", "key_pairs"):
        body[key] = ({"limit": quota[key], "in_use": used[key], "reserved": 0}
                     if detail or call.request.args.get("usage") else quota[key])
    if call.request.method == "PUT":
        del body["id"]  # quota_sets.py update: "Removed 'id' from update's response"
    return json_response({"quota_set": body})


def _update_quotas(call: Call, project_id: str) -> None:
    """nova/api/openstack/compute/quota_sets.py ``update``: admin only (nova/policies/
    quota_sets.py), each limit at least the usage (``_validate_quota_limit``; -1 is
    infinite) unless ``force``, checked before any is set. The simulator enforces
    instances, cores, ram and key_pairs; other keys are accepted unused."""
    if not call.is_admin:
        raise ApiError(403, "Policy doesn't allow os_compute_api:os-quota-sets:update to be "
                            "performed.")
    if project_id != PROJECT_ID:
        raise ApiError(400, "The simulated cloud keeps quotas for its one project only.")
    wanted = body_dict(call.json(), "quota_set")
    force = str(wanted.get("force", "false")).lower() in ("true", "1", "yes", "on")
    used = _usage(call.world)
    limits: dict[str, int] = {}
    for key, value in wanted.items():
        if key not in used:
            continue
        limit = int(value)
        if not force and limit != -1 and limit < used[key]:
            raise ApiError(400, f"Quota limit {limit} for {key} must be greater than or equal "
                                f"to already used and reserved {used[key]}.")
        limits[key] = limit
    call.world.faults.set_quota("compute", **limits)


def quota_set_detail(call: Call, project_id: str) -> Response:
    return quota_set(call, project_id, detail=True)


def availability_zones(call: Call) -> Response:
    return json_response({"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]})


def rules() -> list[Any]:
    s = f"{V}/servers/<server_id>"
    return [
        route("/compute", versions, public=True),
        route(V, version, public=True),
        route(f"{V}/flavors", list_flavors),
        route(f"{V}/flavors/detail", list_flavors_detail),
        route(f"{V}/flavors/<flavor_id>", show_flavor),
        route(f"{V}/flavors/<flavor_id>/os-extra_specs", flavor_extra_specs),
        route(f"{V}/os-keypairs", list_keypairs),
        route(f"{V}/os-keypairs", create_keypair, ("POST",)),
        route(f"{V}/os-keypairs/<name>", show_keypair),
        route(f"{V}/os-keypairs/<name>", delete_keypair, ("DELETE",)),
        route(f"{V}/servers", list_servers),
        route(f"{V}/servers", create_server, ("POST",)),
        route(f"{V}/servers/detail", list_servers_detail),
        route(s, show_server),
        route(s, update_server, ("PUT",)),
        route(s, delete_server, ("DELETE",)),
        route(f"{s}/action", server_action, ("POST",)),
        route(f"{s}/remote-consoles", remote_console, ("POST",)),
        route(f"{s}/os-server-password", server_password, ("GET", "DELETE")),
        route(f"{s}/metadata", metadata, ("GET", "PUT", "POST")),
        route(f"{s}/metadata/<key>", metadata_item, ("GET", "PUT", "DELETE")),
        route(f"{s}/tags", tags, ("GET", "PUT", "DELETE")),
        route(f"{s}/tags/<tag_name>", tag, ("GET", "PUT", "DELETE")),
        route(f"{s}/os-volume_attachments", volume_attachments),
        route(f"{s}/os-instance-actions", instance_actions),
        route(f"{s}/os-instance-actions/<request_id>", instance_action),
        route(f"{V}/limits", limits),
        route(f"{V}/os-quota-sets/<project_id>", quota_set, ("GET", "PUT")),
        route(f"{V}/os-quota-sets/<project_id>/detail", quota_set_detail),
        route(f"{V}/os-availability-zone", availability_zones),
    ]


# Nova's limit on user data (the instances.user_data column), after base64 decoding.
USER_DATA_MAX = 65535


def _user_data(raw: Any) -> bytes | None:
    """Nova takes user data base64-encoded and refuses anything else (nova/api/openstack/
    compute/servers.py: "User data needs to be valid base 64")."""
    if raw is None:
        return None
    try:
        data = base64.b64decode(str(raw), validate=True)
    except (ValueError, TypeError):
        raise _bad_create("User data needs to be valid base 64.") from None
    if len(data) > USER_DATA_MAX:
        raise _bad_create("User data too large.")
    return data


def _config_drive(raw: Any) -> bool:
    """Nova's schema takes a boolean (or its string forms) for ``config_drive``."""
    if raw is None or raw == "":
        return False
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise _bad_create("Invalid input for field/attribute config_drive.")
