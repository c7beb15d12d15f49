"""Deleting what a build created: idempotent (404 is success), retried, waiting until gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openstack.connection import Connection

from osbuild.cloud import network
from osbuild.cloud.clock import Clock, Deadline, session_clock
from osbuild.cloud.retry import is_not_found, retrying, status_of
from osbuild.durations import format_duration


def _until_gone(fetch: Callable[[], Any], timeout: float, clock: Clock,
                interval: float = 2.0) -> None:
    deadline = Deadline.after(clock, timeout, "deletion")
    while True:
        try:
            resource = retrying(fetch, clock=clock)
        except Exception as exc:
            if is_not_found(exc):
                return
            raise
        if resource is None:
            return
        status = (getattr(resource, "status", "") or "").lower()
        if status in ("deleted",):
            return
        if deadline.expired:
            raise TimeoutError(f"still {status} after {format_duration(timeout)}")
        clock.sleep(interval)


def _ignoring_not_found(fn: Callable[[], Any], clock: Clock) -> None:
    try:
        retrying(fn, clock=clock)
    except Exception as exc:
        if not is_not_found(exc):
            raise


def delete_server(conn: Connection, server_id: str, *, timeout: float = 600.0) -> None:
    """Delete and wait until Nova has released the server's volumes and ports."""
    clock = session_clock(conn)
    _ignoring_not_found(lambda: conn.compute.delete_server(server_id), clock)
    _until_gone(lambda: conn.compute.get_server(server_id), timeout, clock)
    # Ports Nova created are removed with the server; remove any it left behind.
    for port in network.ports(conn, device_id=server_id):
        network.delete_port(conn, str(port.id))


def delete_volume(conn: Connection, volume_id: str, *, timeout: float = 600.0) -> None:
    clock = session_clock(conn)

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

    deadline = Deadline.after(clock, timeout, "volume deletion")
    while True:
        try:
            retrying(attempt, clock=clock)
            break
        except _Busy as busy:
            if deadline.expired:
                raise VolumeStuck(volume_id, str(busy)) from None
            clock.sleep(2.0)
        except Exception as exc:
            if is_not_found(exc):
                return
            raise
    _until_gone(lambda: conn.block_storage.get_volume(volume_id), timeout, clock)


def delete_image(conn: Connection, image_id: str) -> None:
    try:
        _ignoring_not_found(lambda: conn.image.delete_image(image_id), session_clock(conn))
    except Exception as exc:
        # Real Glance answers a DELETE that crossed another one (our retry after a lost
        # answer) with 400 "Image status transition from deleted to deleted is not
        # allowed": the image is gone (seen in the functional tier, 2026-12-02).
        if not (status_of(exc) == 400 and "from deleted to deleted" in str(exc)):
            raise


def delete_keypair(conn: Connection, name: str) -> None:
    _ignoring_not_found(lambda: conn.compute.delete_keypair(name), session_clock(conn))


class _Busy(Exception):
    pass


class VolumeStuck(TimeoutError):
    """A volume stayed in a state Cinder refuses to delete it in; ``advice`` says what
    unsticks it, for the leftover's line."""

    def __init__(self, volume_id: str, status: str) -> None:
        super().__init__(f"volume {volume_id} stuck in {status}")
        # Only an admin may reset a volume's status (Cinder's os-reset_status policy); a
        # project member cannot delete a volume stuck uploading or downloading otherwise.
        self.advice = (f"stuck in {status}: an admin resets it first (openstack volume set "
                       f"--state error {volume_id}), then it can be deleted")
