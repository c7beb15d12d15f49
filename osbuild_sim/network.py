"""Neutron v2.0: networks, subnets, ports (owned by servers) and security groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from osbuild_sim.http import ApiError, empty, json_response, route
from osbuild_sim.world import PROJECT_ID

if TYPE_CHECKING:
    from osbuild_sim.app import Call
    from osbuild_sim.records import Network, Port, SecurityGroup, Subnet

V = "/network/v2.0"
_COMMON = {"tenant_id": PROJECT_ID, "project_id": PROJECT_ID, "revision_number": 1,
           "tags": [], "description": "", "created_at": "2026-01-01T00:00:00Z",
           "updated_at": "2026-01-01T00:00:00Z"}


def versions(call: Call) -> Response:
    return json_response({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
        {"rel": "self", "href": f"{call.base_url}{V}/"}]}]})


def resources(call: Call) -> Response:
    names = ("network", "subnet", "port", "security-group")
    return json_response({"resources": [
        {"name": n, "collection": n + "s",
         "links": [{"rel": "self", "href": f"{call.base_url}{V}/{n}s"}]} for n in names]})


def _network(net: Network) -> dict[str, Any]:
    return {**_COMMON, "id": net.id, "name": net.name, "status": "ACTIVE",
            "subnets": list(net.subnets), "admin_state_up": True, "shared": False,
            "router:external": False, "mtu": 1450, "port_security_enabled": True,
            "availability_zones": ["nova"], "availability_zone_hints": [],
            "ipv4_address_scope": None, "ipv6_address_scope": None, "is_default": False,
            "l2_adjacency": True, "provider:network_type": "geneve"}


def _subnet(sub: Subnet) -> dict[str, Any]:
    return {**_COMMON, "id": sub.id, "name": sub.name, "network_id": sub.network_id,
            "cidr": sub.cidr, "gateway_ip": sub.gateway_ip, "ip_version": 4,
            "enable_dhcp": True, "dns_nameservers": [], "host_routes": [],
            "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}],
            "ipv6_ra_mode": None, "ipv6_address_mode": None, "subnetpool_id": None,
            "service_types": []}


def _port(port: Port) -> dict[str, Any]:
    return {**_COMMON, "id": port.id, "name": port.name, "network_id": port.network_id,
            "mac_address": port.mac_address, "fixed_ips": [dict(ip) for ip in port.fixed_ips],
            "device_id": port.device_id, "device_owner": port.device_owner,
            "status": port.status, "admin_state_up": True, "security_groups":
            list(port.security_groups), "binding:vnic_type": "normal",
            "port_security_enabled": True, "allowed_address_pairs": [], "extra_dhcp_opts": [],
            # Neutron stamps each port when it is made (the networks above are seeded).
            "created_at": port.created_at, "updated_at": port.created_at}


def _group(group: SecurityGroup) -> dict[str, Any]:
    return {**_COMMON, "id": group.id, "name": group.name, "description": group.description,
            "security_group_rules": [dict(r) for r in group.rules], "stateful": True,
            "shared": False}


def _listing(call: Call, items: list[dict[str, Any]], key: str) -> Response:
    args = call.request.args
    for name in args:
        if name in ("fields", "limit", "marker", "sort_key", "sort_dir"):
            continue
        wanted = set(args.getlist(name))
        items = [i for i in items if str(i.get(name)) in wanted]
    return json_response({key: items})


def _show(items: dict[str, Any], ident: str, render: Callable[[Any], dict[str, Any]],
          kind: str, neutron_type: str) -> dict[str, Any]:
    item = items.get(ident)
    if item is None:
        raise ApiError(404, f"{kind} {ident} could not be found.", neutron_type=neutron_type)
    return render(item)


def list_networks(call: Call) -> Response:
    return _listing(call, [_network(n) for n in call.world.networks.values()], "networks")


def show_network(call: Call, ident: str) -> Response:
    return json_response({"network": _show(call.world.networks, ident, _network, "Network",
                                           "NetworkNotFound")})


def list_subnets(call: Call) -> Response:
    return _listing(call, [_subnet(s) for s in call.world.subnets.values()], "subnets")


def show_subnet(call: Call, ident: str) -> Response:
    return json_response({"subnet": _show(call.world.subnets, ident, _subnet, "Subnet",
                                          "SubnetNotFound")})


def list_ports(call: Call) -> Response:
    return _listing(call, [_port(p) for p in call.world.ports.values()], "ports")


def show_port(call: Call, ident: str) -> Response:
    return json_response({"port": _show(call.world.ports, ident, _port, "Port",
                                        "PortNotFound")})


def delete_port(call: Call, ident: str) -> Response:
    _show(call.world.ports, ident, _port, "Port", "PortNotFound")
    port = call.world.ports.pop(ident)
    server = call.world.servers.get(port.device_id)
    if server is not None and port.id in server.port_ids:
        server.port_ids.remove(port.id)
    return empty(204)


def list_groups(call: Call) -> Response:
    return _listing(call, [_group(g) for g in call.world.security_groups.values()],
                    "security_groups")


def show_group(call: Call, ident: str) -> Response:
    return json_response({"security_group": _show(call.world.security_groups, ident, _group,
                                                  "Security group", "SecurityGroupNotFound")})


def rules() -> list[Any]:
    return [
        route("/network", versions, public=True),
        route(V, resources),
        route(f"{V}/networks", list_networks),
        route(f"{V}/networks/<ident>", show_network),
        route(f"{V}/subnets", list_subnets),
        route(f"{V}/subnets/<ident>", show_subnet),
        route(f"{V}/ports", list_ports),
        route(f"{V}/ports/<ident>", show_port),
        route(f"{V}/ports/<ident>", delete_port, ("DELETE",)),
        route(f"{V}/security-groups", list_groups),
        route(f"{V}/security-groups/<ident>", show_group),
    ]
