"""Cinder v3: volumes, actions, volume image metadata, snapshots, messages, types, quotas."""

from __future__ import annotations

import ast
import json
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from osbuild_sim import storage
from osbuild_sim.http import (
    ApiError,
    body_dict,
    empty,
    json_response,
    links,
    metadata_collection,
    metadata_item,
    microversioned_doc,
    route,
)
from osbuild_sim.world import PROJECT_ID, USER_ID

if TYPE_CHECKING:
    from osbuild_sim.app import Call
    from osbuild_sim.records import Attachment, Snapshot, Volume
    from osbuild_sim.world import World

P = "/volume/v3/<project_id>"
_DEFAULT_TYPE = {"id": "b1c2d3e4-0000-4000-8000-00000000de4a", "name": "__DEFAULT__",
                 "description": "Default Volume Type", "is_public": True, "extra_specs": {},
                 "qos_specs_id": None, "os-volume-type-access:is_public": True}


def _version_doc(base_url: str) -> dict[str, Any]:
    return microversioned_doc(base_url, "/volume/v3", ident="v3.0", version="3.71",
                              min_version="3.0", updated="2023-08-31T00:00:00Z",
                              media_type="application/vnd.openstack.volume+json;version=3")


def versions(call: Call) -> Response:
    return json_response({"versions": [_version_doc(call.base_url)]}, 300)


def version(call: Call, project_id: str | None = None) -> Response:
    return json_response({"versions": [_version_doc(call.base_url)]})


def _check_project(project_id: str | None) -> None:
    """The project in the URL, if any, must be the token's (cinder/api/openstack/wsgi.py:
    Resource._process_stack); the URL may leave it out (cinder/api/v3/router.py)."""
    if project_id is not None and project_id != PROJECT_ID:
        raise ApiError(400, "Malformed request url")


def find_volume(world: World, volume_id: str) -> Volume:
    volume = world.volumes.get(volume_id)
    if volume is None:
        raise ApiError(404, f"Volume {volume_id} could not be found.")
    return volume


def _links(call: Call, volume: Volume) -> list[dict[str, str]]:
    return links(call, "/volume/v3", "/volume", f"{PROJECT_ID}/volumes/{volume.id}")


def _volume(call: Call, volume: Volume) -> dict[str, Any]:
    admin = call.is_admin
    body: dict[str, Any] = {
        "id": volume.id, "name": volume.name, "status": volume.status, "size": volume.size,
        "availability_zone": volume.availability_zone, "created_at": volume.created_at,
        "updated_at": volume.updated_at or None, "description": volume.description,
        "volume_type": volume.volume_type, "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid, "metadata": dict(volume.metadata),
        "bootable": "true" if volume.bootable else "false", "encrypted": False,
        "replication_status": None, "consistencygroup_id": None, "multiattach": False,
        "user_id": USER_ID, "os-vol-tenant-attr:tenant_id": PROJECT_ID,
        "links": _links(call, volume),
        "attachments": [
            {"id": volume.id, "attachment_id": a.id, "volume_id": volume.id,
             "server_id": a.server_id, "host_name": "sim-compute-1" if admin else None,
             "device": a.device, "attached_at": a.attached_at}
            for a in volume.attachments
        ],
    }
    # Admin-only (cinder/policies/volumes.py: the host and migration attributes are
    # RULE_ADMIN_API; cinder/api/v3/views/volumes.py checks is_admin for the others);
    # the tenant attribute is for any project reader.
    if admin:
        body.update({"os-vol-host-attr:host": "sim-volume@lvm#lvm", "migration_status": None,
                     "os-vol-mig-status-attr:migstat": None,
                     "os-vol-mig-status-attr:name_id": None})
    if volume.image_metadata:
        body["volume_image_metadata"] = dict(volume.image_metadata)
    if call.at_least(3, 13):
        body["group_id"] = None
    if call.at_least(3, 21) and admin:
        body["provider_id"] = None
    if call.at_least(3, 48):
        body["service_uuid"] = "sim-volume-service"
        body["shared_targets"] = False
    if call.at_least(3, 61) and admin:
        body["cluster_name"] = None
    if call.at_least(3, 63):
        body["volume_type_id"] = _DEFAULT_TYPE["id"]
    if call.at_least(3, 65):
        body["consumes_quota"] = True
    return body


def create_volume(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    body = body_dict(call.json(), "volume")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ApiError(400, "Invalid input for field/attribute metadata.")
    volume = storage.create_volume(
        call.world, name=body.get("name") or "", size=body.get("size"),
        image_id=body.get("imageRef") or body.get("image_id"),
        source_volid=body.get("source_volid"), snapshot_id=body.get("snapshot_id"),
        metadata={str(k): str(v) for k, v in metadata.items()},
        description=body.get("description"), volume_type=body.get("volume_type"),
        availability_zone=body.get("availability_zone"))
    return json_response({"volume": _volume(call, volume)}, 202)


def _metadata_filter(raw: str) -> dict[str, str] | None:
    """Cinder literal_evals the filter; a value that is not a dict matches nothing."""
    for parse in (ast.literal_eval, json.loads):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    return None


def _filtered(call: Call) -> list[Volume]:
    args = call.request.args
    volumes = list(call.world.volumes.values())
    if "name" in args:
        volumes = [v for v in volumes if v.name == args["name"]]
    if "status" in args:
        volumes = [v for v in volumes if v.status == args["status"]]
    if "metadata" in args:
        wanted = _metadata_filter(args["metadata"])
        volumes = [v for v in volumes if wanted is not None
                   and all(v.metadata.get(k) == w for k, w in wanted.items())]
    volumes.sort(key=lambda v: (v.created_at, v.id), reverse=True)
    if "limit" in args:
        volumes = volumes[: int(args["limit"])]
    return volumes


def list_volumes(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    return json_response({"volumes": [
        {"id": v.id, "name": v.name, "links": _links(call, v)} for v in _filtered(call)]})


def list_volumes_detail(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    return json_response({"volumes": [_volume(call, v) for v in _filtered(call)]})


def show_volume(call: Call, project_id: str | None, volume_id: str) -> Response:
    _check_project(project_id)
    return json_response({"volume": _volume(call, find_volume(call.world, volume_id))})


def update_volume(call: Call, project_id: str | None, volume_id: str) -> Response:
    _check_project(project_id)
    volume = find_volume(call.world, volume_id)
    body = body_dict(call.json(), "volume")
    if "name" in body:
        volume.name = str(body["name"])
    if "description" in body:
        volume.description = body["description"]
    if "metadata" in body:
        volume.metadata = {str(k): str(v) for k, v in (body["metadata"] or {}).items()}
    volume.updated_at = call.world.stamp()
    return json_response({"volume": _volume(call, volume)})


def delete_volume(call: Call, project_id: str | None, volume_id: str) -> Response:
    _check_project(project_id)
    cascade = call.request.args.get("cascade", "false").lower() == "true"
    storage.delete_volume(call.world, find_volume(call.world, volume_id), cascade=cascade)
    return empty(202)


def _as_strings(entries: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in entries.items()}


def volume_metadata(call: Call, project_id: str | None, volume_id: str) -> Response:
    _check_project(project_id)
    return metadata_collection(call, find_volume(call.world, volume_id), _as_strings)


def volume_metadata_item(call: Call, project_id: str | None, volume_id: str, key: str) -> Response:
    _check_project(project_id)
    return metadata_item(call, find_volume(call.world, volume_id), key, _as_strings,
                         missing=f"Volume {volume_id} has no metadata with key {key}.",
                         deleted=200)


def volume_action(call: Call, project_id: str | None, volume_id: str) -> Response:
    _check_project(project_id)
    world = call.world
    volume = find_volume(world, volume_id)
    body = call.json()
    if not isinstance(body, dict) or len(body) != 1:
        raise ApiError(400, "Malformed request body")
    action, args = next(iter(body.items()))
    if action == "os-set_image_metadata":
        storage.set_image_metadata(world, volume, body_dict(args).get("metadata"))
        return json_response({"metadata": dict(volume.image_metadata)})
    if action == "os-unset_image_metadata":
        key = body_dict(args).get("key")
        if key not in volume.image_metadata:
            raise ApiError(404, f"Glance metadata for volume {volume.id} with key {key} "
                                "cannot be found.")
        del volume.image_metadata[key]
        return empty(200)
    if action == "os-show_image_metadata":
        return json_response({"metadata": dict(volume.image_metadata)})
    if action == "os-volume_upload_image":
        return _upload(call, volume, body_dict(args))
    if action == "os-reset_status":
        if not call.is_admin:
            raise ApiError(403, "Policy doesn't allow volume_extension:volume_admin_actions:"
                                "reset_status to be performed.")
        args = body_dict(args)
        if "status" in args:
            volume.status = str(args["status"])
        if args.get("attach_status") == "detached":
            volume.attachments.clear()
        volume.updated_at = world.stamp()
        return empty(202)
    if action == "os-extend":
        new_size = int(body_dict(args).get("new_size", 0))
        if volume.status != "available":
            raise ApiError(400, f"Invalid volume: Volume {volume.id} status must be available "
                                f"to extend, but current status is: {volume.status}.")
        if new_size <= volume.size:
            raise ApiError(400, "Invalid input received: New size for extend must be greater "
                                f"than current size. (current: {volume.size}, extended: "
                                f"{new_size}).")
        storage.check_volume_quota(world, new_size - volume.size, count=0)
        volume.size = new_size
        return empty(202)
    if action == "os-set_bootable":
        volume.bootable = str(body_dict(args).get("bootable")).lower() == "true"
        return empty(200)
    raise ApiError(400, f"There is no such action: {action}. Verify the request body and "
                        "Content-Type header and try again.")


def _upload(call: Call, volume: Volume, args: dict[str, Any]) -> Response:
    if not args.get("image_name"):
        raise ApiError(400, "Invalid input for field/attribute image_name.")
    if ("visibility" in args or "protected" in args) and not call.at_least(3, 1):
        raise ApiError(400, "Invalid input for field/attribute os-volume_upload_image. "
                            "Additional properties are not allowed")
    image = storage.upload_to_image(
        call.world, volume, image_name=str(args["image_name"]),
        disk_format=args.get("disk_format") or "raw",
        container_format=args.get("container_format") or "bare",
        visibility=args.get("visibility") or "private",
        protected=bool(args.get("protected", False)))
    answer = {"id": volume.id, "updated_at": volume.updated_at, "status": volume.status,
              "display_description": volume.description, "size": volume.size,
              "volume_type": dict(_DEFAULT_TYPE), "image_id": image.id,
              "container_format": image.container_format, "disk_format": image.disk_format,
              "image_name": image.name}
    if call.at_least(3, 1):
        answer.update(visibility=image.visibility, protected=image.protected)
    return json_response({"os-volume_upload_image": answer}, 202)


# -- snapshots, messages, types, limits --------------------------------------------------------
def _snapshot(snap: Snapshot) -> dict[str, Any]:
    return {"id": snap.id, "volume_id": snap.volume_id, "name": snap.name, "size": snap.size,
            "status": snap.status, "created_at": snap.created_at, "description": None,
            "metadata": dict(snap.metadata), "updated_at": None}


def list_snapshots(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    return json_response({"snapshots": [_snapshot(s) for s in call.world.snapshots.values()]})


def show_snapshot(call: Call, project_id: str | None, snapshot_id: str) -> Response:
    _check_project(project_id)
    snap = call.world.snapshots.get(snapshot_id)
    if snap is None:
        raise ApiError(404, f"Snapshot {snapshot_id} could not be found.")
    if call.request.method == "DELETE":
        if snap.status not in ("available", "error"):
            raise ApiError(400, "Invalid snapshot: Volume Snapshot status must be available "
                                "or error.")
        snap.status = "deleting"
        world = call.world

        def gone() -> None:
            world.snapshots.pop(snap.id, None)

        world.schedule(2.0, gone)
        return empty(202)
    return json_response({"snapshot": _snapshot(snap)})


def list_messages(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    if not call.at_least(3, 3):
        raise ApiError(404, "The resource could not be found.")
    args = call.request.args
    out = []
    for msg in call.world.messages.values():
        if "resource_uuid" in args and msg.resource_uuid != args["resource_uuid"]:
            continue
        out.append({"id": msg.id, "event_id": msg.event_id, "user_message": msg.user_message,
                    "message_level": msg.message_level, "resource_type": msg.resource_type,
                    "resource_uuid": msg.resource_uuid, "created_at": msg.created_at,
                    "guaranteed_until": msg.created_at, "request_id": "req-" + msg.id,
                    "links": []})
    return json_response({"messages": out})


def list_types(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    return json_response({"volume_types": [dict(_DEFAULT_TYPE)]})


def _quota_usage(world: World) -> dict[str, int]:
    return {"volumes": len(world.volumes), "gigabytes": sum(v.size for v in world.volumes.values()),
            "snapshots": len(world.snapshots)}


def limits(call: Call, project_id: str | None) -> Response:
    _check_project(project_id)
    quota = call.world.faults.quotas["volume"]
    used = _quota_usage(call.world)
    return json_response({"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": quota["volumes"], "maxTotalVolumeGigabytes": quota["gigabytes"],
        "maxTotalSnapshots": quota["snapshots"], "maxTotalBackups": 10,
        "maxTotalBackupGigabytes": 1000, "totalVolumesUsed": used["volumes"],
        "totalGigabytesUsed": used["gigabytes"], "totalSnapshotsUsed": used["snapshots"],
        "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0}}})


# What Cinder shows beside the three quotas the sim enforces: the shipped defaults of
# cinder/quota.py (quota_backups, quota_backup_gigabytes, quota_groups,
# per_volume_size_limit) and the default type's per-type quotas (-1).
_UNENFORCED_QUOTAS = {"per_volume_gigabytes": -1, "backups": 10, "backup_gigabytes": 1000,
                      "groups": 10}
_PER_TYPE = {"volumes___DEFAULT__": "volumes", "gigabytes___DEFAULT__": "gigabytes",
             "snapshots___DEFAULT__": "snapshots"}


def quota_set(call: Call, project_id: str | None, target: str) -> Response:
    """cinder/api/contrib/quotas.py: a member may read its own project's quotas only
    (policy volume_extension:quotas:show against the target), and never update them; the
    admin may (cinder/policies/quotas.py, UPDATE_POLICY = RULE_ADMIN_API)."""
    _check_project(project_id)
    action = "update" if call.request.method == "PUT" else "show"
    if not call.is_admin and (action == "update" or target != PROJECT_ID):
        raise ApiError(403, f"Policy doesn't allow volume_extension:quotas:{action} to be "
                            "performed.")
    if target != PROJECT_ID:
        raise ApiError(400, "The simulated cloud keeps quotas for its one project only.")
    if action == "update":
        _update_quotas(call)
    quota = call.world.faults.quotas["volume"]
    used = _quota_usage(call.world)
    limits = {key: (quota[key], used[key]) for key in ("volumes", "gigabytes", "snapshots")}
    limits.update({key: (limit, 0) for key, limit in _UNENFORCED_QUOTAS.items()})
    limits.update({key: (-1, used[of]) for key, of in _PER_TYPE.items()})
    usage = call.request.args.get("usage", "false").lower() == "true"
    body: dict[str, Any] = {
        key: {"limit": limit, "in_use": in_use, "reserved": 0} if usage else limit
        for key, (limit, in_use) in limits.items()}
    if action == "update":  # update answers the limits alone, without the id
        return json_response({"quota_set": body})
    body["id"] = target
    return json_response({"quota_set": body})


def _update_quotas(call: Call) -> None:
    """cinder/api/contrib/quotas.py ``update``: every limit is checked against the usage
    first (``_validate_existing_resource``; -1 always passes), then all are set. The
    simulator enforces volumes, gigabytes and snapshots; other keys are accepted unused."""
    wanted = body_dict(call.json(), "quota_set")
    used = _quota_usage(call.world)
    limits: dict[str, int] = {}
    for key, value in wanted.items():
        if key not in used:
            continue
        limit = int(value)
        if limit != -1 and limit < used[key]:
            raise ApiError(400, f"Quota {key} limit must be equal or greater than existing "
                                f"resources. Current usage is {used[key]} and the requested "
                                f"limit is {limit}.")
        limits[key] = limit
    call.world.faults.set_quota("volume", **limits)


def _attachment(volume: Volume, attachment: Attachment, *, detail: bool) -> dict[str, Any]:
    """cinder/api/v3/views/attachments.py: summary, or detail with times and mode."""
    body: dict[str, Any] = {"id": attachment.id, "status": "attached",
                            "instance": attachment.server_id, "volume_id": volume.id}
    if detail:
        body.update(attached_at=attachment.attached_at, detached_at="", attach_mode="rw",
                    connection_info={})
    return body


def _attachments(call: Call) -> list[tuple[Volume, Attachment]]:
    # The attachments API exists from 3.27 (cinder/api/v3/attachments.py, NEW_ATTACH);
    # below it Cinder answers a bare 404 (wsgi.Resource: VersionNotFoundForAPIMethod).
    if not call.at_least(3, 27):
        raise ApiError(404, "The resource could not be found.")
    return [(v, a) for v in call.world.volumes.values() for a in v.attachments]


def list_attachments(call: Call, project_id: str | None, detail: bool = False) -> Response:
    _check_project(project_id)
    return json_response({"attachments": [_attachment(v, a, detail=detail)
                                          for v, a in _attachments(call)]})


def show_attachment(call: Call, project_id: str | None, attachment_id: str) -> Response:
    _check_project(project_id)
    for volume, attachment in _attachments(call):
        if attachment.id == attachment_id:
            return json_response({"attachment": _attachment(volume, attachment, detail=True)})
    raise ApiError(404, f"VolumeAttachment {attachment_id} could not be found.")


def _cinder_rules(prefix: str, defaults: dict[str, Any] | None) -> list[Any]:
    def r(path: str, handler: Any, methods: tuple[str, ...] = ("GET",),
          extra: dict[str, Any] | None = None) -> Any:
        return route(prefix + path, handler, methods, defaults={**(defaults or {}),
                                                               **(extra or {})} or None)

    v = "/volumes/<volume_id>"
    return [
        r("/volumes", list_volumes),
        r("/volumes", create_volume, ("POST",)),
        r("/volumes/detail", list_volumes_detail),
        r(v, show_volume),
        r(v, update_volume, ("PUT",)),
        r(v, delete_volume, ("DELETE",)),
        r(f"{v}/action", volume_action, ("POST",)),
        r(f"{v}/metadata", volume_metadata, ("GET", "POST", "PUT")),
        r(f"{v}/metadata/<key>", volume_metadata_item, ("GET", "PUT", "DELETE")),
        r("/snapshots", list_snapshots),
        r("/snapshots/detail", list_snapshots),
        r("/snapshots/<snapshot_id>", show_snapshot, ("GET", "DELETE")),
        r("/attachments", list_attachments),
        r("/attachments/detail", list_attachments, extra={"detail": True}),
        r("/attachments/<attachment_id>", show_attachment),
        r("/messages", list_messages),
        r("/types", list_types),
        r("/limits", limits),
        r("/os-quota-sets/<target>", quota_set, ("GET", "PUT")),
    ]


def rules() -> list[Any]:
    # Every route with and without the project in the URL, as cinder/api/v3/router.py
    # maps them (from 3.67 clients may rely on it; Cinder routes both at any version).
    return [
        route("/volume", versions, public=True),
        route("/volume/v3", version, public=True),
        route(P, version),
        *_cinder_rules(P, None),
        *_cinder_rules("/volume/v3", {"project_id": None}),
    ]
