"""Neutron: the networks a build boots on and the ports its servers leave behind."""

from __future__ import annotations

import threading

from openstack.connection import Connection
from openstack.network.v2.network import Network
from openstack.network.v2.port import Port

from osbuild.cloud.clock import session_clock
from osbuild.cloud.retry import is_not_found, retrying


def find_network(conn: Connection, name_or_id: str, *,
                 cancel: threading.Event | None = None) -> Network | None:
    """The network named or numbered ``name_or_id``, or None.

    Several networks of that name raise openstacksdk's DuplicateResource.
    """
    return retrying(conn.network.find_network, name_or_id, ignore_missing=True,
                    clock=session_clock(conn), cancel=cancel)


def ports(conn: Connection, *, device_id: str | None = None,
          cancel: threading.Event | None = None) -> list[Port]:
    """Every port of the project, or those of one device (a server)."""
    query = {"device_id": device_id} if device_id is not None else {}
    return retrying(lambda: list(conn.network.ports(**query)), clock=session_clock(conn),
                    cancel=cancel)


def delete_port(conn: Connection, port_id: str) -> None:
    """Delete a port; one already gone is deleted."""
    try:
        retrying(conn.network.delete_port, port_id, clock=session_clock(conn))
    except Exception as exc:
        if not is_not_found(exc):
            raise
