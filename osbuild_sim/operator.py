"""What operators ask a cloud first with the `openstack` client, answered by the simulator.

`availability zone list [--long]`, `hypervisor list/show` (no aggregates), `compute service list`,
`service list`, `endpoint list`, `user list/show`, `flavor create/delete`. One simulated compute
host, `sim-compute-1`, in the zone `nova`.

Most of these are the admin's only, as the services' default policies (Nova 34, Keystone 30)
have them: a project member (the user osbuild runs as) gets the real 403 body, naming the
policy; the cloud's admin (clouds.yaml's `osbuild-sim-admin`) gets the answer.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from osbuild_sim import identity
from osbuild_sim.compute import _flavor, _usage
from osbuild_sim.http import ApiError, body_dict, empty, json_response, route
from osbuild_sim.machines import HOST
from osbuild_sim.records import Flavor
from osbuild_sim.world import DOMAIN_ID, PROJECT_ID, USER_ID, USER_NAME

if TYPE_CHECKING:
    from osbuild_sim.app import Call

ZONE = "nova"
V = "/compute/v2.1"
HYPERVISOR_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, HOST))
# The simulated host's size: what `hypervisor show` reports before microversion 2.88.
HOST_VCPUS, HOST_RAM_MB, HOST_DISK_GB = 64, 262144, 4096


def _updated(call: Call) -> str:
    return str(call.world.stamp())


def _nova_admin_only(call: Call, action: str) -> None:
    """nova/policies/{availability_zone,hypervisors,services,aggregates,flavor_manage}.py:
    these rules are ``rule:context_is_admin``; nova.exception.PolicyNotAuthorized says so."""
    if not call.is_admin:
        raise ApiError(403, f"Policy doesn't allow os_compute_api:{action} to be performed.")


def _keystone_admin_only(call: Call, action: str) -> None:
    """keystone/common/policies/{user,service,endpoint}.py: admin, or a reader with system
    (or, for users, domain) scope; a project member has neither."""
    if not call.is_admin:
        raise identity.forbidden(f"identity:{action}")


# -- availability zones ----------------------------------------------------------------------
def compute_zones_detail(call: Call) -> Response:
    _nova_admin_only(call, "os-availability-zone:detail")
    services = {"nova-compute": {"available": True, "active": True,
                                 "updated_at": _updated(call)}}
    return json_response({"availabilityZoneInfo": [
        {"zoneName": ZONE, "zoneState": {"available": True}, "hosts": {HOST: services}},
        {"zoneName": "internal", "zoneState": {"available": True},
         "hosts": {"sim-controller": {"nova-scheduler": services["nova-compute"],
                                      "nova-conductor": services["nova-compute"]}}},
    ]})


def volume_zones(call: Call) -> Response:
    return json_response({"availabilityZoneInfo": [
        {"zoneName": ZONE, "zoneState": {"available": True}}]})


def network_zones(call: Call) -> Response:
    return json_response({"availability_zones": [
        {"name": ZONE, "resource": resource, "state": "available"}
        for resource in ("network", "router")]})


# -- hypervisors and compute services --------------------------------------------------------
def _hypervisor(call: Call, *, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"id": HYPERVISOR_ID, "hypervisor_hostname": HOST,
                            "state": "up", "status": "enabled"}
    if not detail:
        return body
    body.update({"hypervisor_type": "QEMU", "hypervisor_version": 8002000,
                 "host_ip": "127.0.0.1",
                 "service": {"host": HOST, "id": 1, "disabled_reason": None}})
    if call.at_least(2, 88):
        body["uptime"] = None
        return body
    used = _usage(call.world)
    disk_used = sum(v.size for v in call.world.volumes.values())
    body.update({"vcpus": HOST_VCPUS, "memory_mb": HOST_RAM_MB, "local_gb": HOST_DISK_GB,
                 "vcpus_used": used["cores"], "memory_mb_used": used["ram"],
                 "local_gb_used": disk_used, "free_ram_mb": HOST_RAM_MB - used["ram"],
                 "free_disk_gb": HOST_DISK_GB - disk_used, "current_workload": 0,
                 "running_vms": used["instances"], "disk_available_least": None,
                 "cpu_info": "{}"})
    return body


def list_hypervisors(call: Call) -> Response:
    _nova_admin_only(call, "os-hypervisors:list")
    return json_response({"hypervisors": [_hypervisor(call, detail=False)]})


def list_hypervisors_detail(call: Call) -> Response:
    _nova_admin_only(call, "os-hypervisors:list-detail")
    return json_response({"hypervisors": [_hypervisor(call, detail=True)]})


def show_hypervisor(call: Call, hypervisor_id: str) -> Response:
    _nova_admin_only(call, "os-hypervisors:show")
    if hypervisor_id not in (HYPERVISOR_ID, "1"):
        raise ApiError(404, f"Hypervisor with ID {hypervisor_id} could not be found.")
    return json_response({"hypervisor": _hypervisor(call, detail=True)})


def list_aggregates(call: Call) -> Response:
    _nova_admin_only(call, "os-aggregates:index")
    return json_response({"aggregates": []})  # `hypervisor show` asks for them


def list_compute_services(call: Call) -> Response:
    _nova_admin_only(call, "os-services:list")
    rows = [("nova-scheduler", "sim-controller", "internal"),
            ("nova-conductor", "sim-controller", "internal"),
            ("nova-compute", HOST, ZONE)]
    return json_response({"services": [
        {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{binary}.{host}"))
         if call.at_least(2, 53) else index,
         "binary": binary, "host": host, "zone": zone, "status": "enabled", "state": "up",
         "updated_at": _updated(call), "disabled_reason": None, "forced_down": False}
        for index, (binary, host, zone) in enumerate(rows, start=1)]})


# -- flavors ---------------------------------------------------------------------------------
def create_flavor(call: Call) -> Response:
    _nova_admin_only(call, "os-flavor-manage:create")
    body = body_dict(call.json(), "flavor")
    name = body.get("name")
    try:
        vcpus, ram, disk = int(body["vcpus"]), int(body["ram"]), int(body.get("disk", 0))
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid input: flavor needs integer vcpus, ram and disk") from None
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "Invalid input: flavor needs a name")
    world = call.world
    if any(f.name == name for f in world.flavors.values()):
        raise ApiError(409, f"Flavor with name {name} already exists.")
    # Numeric ids, as the seeded flavors have (listings sort by them).
    flavor_id = str(body.get("id") or max((int(i) for i in world.flavors), default=0) + 1)
    if not flavor_id.isdigit():
        raise ApiError(400, f"Invalid input: the simulated cloud takes numeric flavor ids, "
                            f"not {flavor_id!r}")
    if flavor_id in world.flavors:
        raise ApiError(409, f"Flavor with ID {flavor_id} already exists.")
    flavor = Flavor(flavor_id, name, vcpus, ram, disk,
                    ephemeral=int(body.get("OS-FLV-EXT-DATA:ephemeral") or 0),
                    swap=int(body.get("swap") or 0))
    world.flavors[flavor_id] = flavor
    return json_response({"flavor": _flavor(call, flavor)})


def delete_flavor(call: Call, flavor_id: str) -> Response:
    _nova_admin_only(call, "os-flavor-manage:delete")
    if call.world.flavors.pop(flavor_id, None) is None:
        raise ApiError(404, f"Flavor {flavor_id} could not be found.")
    return empty(202)


# -- identity: users, services, endpoints ----------------------------------------------------
def _user(user_id: str, name: str) -> dict[str, Any]:
    return {"id": user_id, "name": name, "domain_id": DOMAIN_ID, "enabled": True,
            "default_project_id": PROJECT_ID, "password_expires_at": None, "options": {},
            "links": {"self": None}}


def list_users(call: Call) -> Response:
    _keystone_admin_only(call, "list_users")
    name = call.request.args.get("name")
    everyone = [_user(USER_ID, USER_NAME),
                _user(identity.ADMIN_USER_ID, identity.ADMIN_USER_NAME)]
    users = [u for u in everyone if name in (None, u["name"])]
    return json_response({"users": users, "links": {"self": None, "next": None}})


def list_services(call: Call) -> Response:
    _keystone_admin_only(call, "list_services")
    return json_response({"services": [
        {"id": entry["id"], "name": entry["name"], "type": entry["type"], "enabled": True,
         "description": f"simulated {entry['type']}", "links": {"self": None}}
        for entry in identity.catalog(call.base_url)],
        "links": {"self": None, "next": None}})


def list_endpoints(call: Call) -> Response:
    _keystone_admin_only(call, "list_endpoints")
    return json_response({"endpoints": [
        {**endpoint, "service_id": entry["id"], "enabled": True, "links": {"self": None}}
        for entry in identity.catalog(call.base_url) for endpoint in entry["endpoints"]],
        "links": {"self": None, "next": None}})


def rules() -> list[Any]:
    return [
        route(f"{V}/os-availability-zone/detail", compute_zones_detail),
        route(f"{V}/os-hypervisors", list_hypervisors),
        route(f"{V}/os-hypervisors/detail", list_hypervisors_detail),
        route(f"{V}/os-hypervisors/<hypervisor_id>", show_hypervisor),
        route(f"{V}/os-services", list_compute_services),
        route(f"{V}/os-aggregates", list_aggregates),
        route(f"{V}/flavors", create_flavor, ("POST",)),
        route(f"{V}/flavors/<flavor_id>", delete_flavor, ("DELETE",)),
        route(f"/volume/v3/{PROJECT_ID}/os-availability-zone", volume_zones),
        route("/network/v2.0/availability_zones", network_zones),
        route("/identity/v3/users", list_users),
        route("/identity/v3/services", list_services),
        route("/identity/v3/endpoints", list_endpoints),
    ]
