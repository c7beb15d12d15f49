"""Deleting what a build created: idempotent (404 is success), retried, waiting until gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from openstack.connection import Connection

from osbuild.cloud.retry import is_not_found, retrying
from osbuild.durations import format_duration


def _until_gone(fetch: Callable[[], Any], timeout: float, time_scale: float,
                interval: float = 2.0) -> None:
    deadline = time.monotonic() + timeout / time_scale
    while True:
        try:
            resource = retrying(fetch, time_scale=time_scale)
        except Exception as exc:
            if is_not_found(exc):
                return
            raise
        if resource is None:
            return
        status = (getattr(resource, "status", "") or "").lower()
        if status in ("deleted",):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {status} after {format_duration(timeout)}")
        time.sleep(interval / time_scale)


def _ignoring_not_found(fn: Callable[[], Any], time_scale: float) -> None:
    try:
        retrying(fn, time_scale=time_scale)
    except Exception as exc:
        if not is_not_found(exc):
            raise


def delete_server(conn: Connection, server_id: str, *, time_scale: float = 1.0,
                  timeout: float = 600.0) -> None:
    """Delete and wait until Nova has released the server's volumes and ports."""
    _ignoring_not_found(lambda: conn.compute.delete_server(server_id), time_scale)
    _until_gone(lambda: conn.compute.get_server(server_id), timeout, time_scale)
    # Ports Nova created are removed with the server; remove any it left behind.
    for port in retrying(lambda: list(conn.network.ports(device_id=server_id)),
                         time_scale=time_scale):
        _ignoring_not_found(partial(conn.network.delete_port, str(port.id)), time_scale)


def delete_volume(conn: Connection, volume_id: str, *, time_scale: float = 1.0,
                  timeout: float = 600.0) -> None:
    def attempt() -> None:
        volume = conn.block_storage.get_volume(volume_id)
        status = (volume.status or "").lower()
        if status in ("deleting",):
            return
        if status in ("in-use", "attaching", "detaching", "reserved", "creating",
                      "downloading", "uploading"):
            # Cinder refuses (400/409) in these states; wait for them to settle.
            raise _Busy(status)
        conn.block_storage.delete_volume(volume_id)

    deadline = time.monotonic() + timeout / time_scale
    while True:
        try:
            retrying(attempt, time_scale=time_scale)
            break
        except _Busy as busy:
            if time.monotonic() > deadline:
                raise TimeoutError(f"volume {volume_id} stuck in {busy}") from None
            time.sleep(2.0 / time_scale)
        except Exception as exc:
            if is_not_found(exc):
                return
            raise
    _until_gone(lambda: conn.block_storage.get_volume(volume_id), timeout, time_scale)


def delete_image(conn: Connection, image_id: str, *, time_scale: float = 1.0) -> None:
    _ignoring_not_found(lambda: conn.image.delete_image(image_id), time_scale)


def delete_keypair(conn: Connection, name: str, *, time_scale: float = 1.0) -> None:
    _ignoring_not_found(lambda: conn.compute.delete_keypair(name), time_scale)


class _Busy(Exception):
    pass
