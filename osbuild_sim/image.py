"""Glance v2: images with properties, tags, visibility, os_hidden, protected, members, data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from osbuild_sim import storage
from osbuild_sim.http import ApiError, empty, json_response, route
from osbuild_sim.world import PROJECT_ID

if TYPE_CHECKING:
    from osbuild_sim.app import Call
    from osbuild_sim.records import Image
    from osbuild_sim.world import World

V = "/image/v2"
VISIBILITIES = ("public", "private", "shared", "community")
_CORE = {"id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
         "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "min_ram",
         "min_disk", "disk_format", "container_format", "created_at", "updated_at", "tags",
         "self", "file", "schema", "direct_url", "locations", "stores"}
_READ_ONLY = {"status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
              "created_at", "updated_at", "self", "file", "schema", "direct_url", "owner"}
_CREATE_FIELDS = {"name", "visibility", "protected", "os_hidden", "min_ram", "min_disk",
                  "disk_format", "container_format", "tags", "id"}


def versions(call: Call) -> Response:
    docs = [{"id": f"v2.{minor}", "status": "CURRENT" if minor == 16 else "SUPPORTED",
             "links": [{"rel": "self", "href": f"{call.base_url}/image/v2/"}]}
            for minor in range(16, -1, -1)]
    return json_response({"versions": docs}, 300)


def find_image(world: World, image_id: str) -> Image:
    image = world.images.get(image_id)
    if image is None:
        raise ApiError(404, f"No image found with ID {image_id}")
    return image


def _image(image: Image) -> dict[str, Any]:
    # A deactivated image keeps its stored checksum and size: Glance refuses its data, not
    # its record (tests/functional/test_real_services.py, against real Glance).
    has_data = image.data is not None and image.status in ("active", "deactivated")
    body: dict[str, Any] = {
        "id": image.id, "name": image.name, "status": image.status,
        "visibility": image.visibility, "protected": image.protected,
        "os_hidden": image.os_hidden, "owner": image.owner,
        "checksum": image.checksum if has_data else None,
        "os_hash_algo": "sha512" if has_data else None,
        "os_hash_value": image.os_hash_value if has_data else None,
        "size": (image.stored_size if image.stored_size is not None
                 else len(image.data or b"")) if has_data else None,
        "virtual_size": image.virtual_size if has_data else None,
        "min_ram": image.min_ram, "min_disk": image.min_disk,
        "disk_format": image.disk_format, "container_format": image.container_format,
        "created_at": image.created_at, "updated_at": image.updated_at,
        "tags": list(image.tags), "self": f"{V[6:]}/images/{image.id}",
        "file": f"/v2/images/{image.id}/file", "schema": "/v2/schemas/image",
    }
    body["self"] = f"/v2/images/{image.id}"
    for key, value in image.properties.items():
        body.setdefault(key, value)
    return body


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ApiError(400, f"Provided object does not match schema 'image': {value!r} is not of "
                        f"type 'boolean' (property {field})")


def _apply(image: Image, key: str, value: Any, *, creating: bool, admin: bool) -> None:
    if key in _READ_ONLY:
        raise ApiError(403, f"Attribute '{key}' is read-only.")
    if key == "name":
        image.name = "" if value is None else str(value)
    elif key == "visibility":
        if value not in VISIBILITIES:
            raise ApiError(400, f"Invalid visibility value: {value}")
        # glance/api/policy.py _enforce_image_visibility: publicize_image is ADMIN
        # (glance/policies/image.py); communitize_image the owner's.
        if value == "public" and not admin:
            raise ApiError(403, "You are not authorized to complete publicize_image action.")
        image.visibility = value
    elif key == "protected":
        image.protected = _bool(value, key)
    elif key == "os_hidden":
        image.os_hidden = _bool(value, key)
    elif key in ("min_ram", "min_disk"):
        if not isinstance(value, int) or value < 0:
            raise ApiError(400, f"Invalid value for {key}: must be a non-negative integer")
        setattr(image, key, value)
    elif key in ("disk_format", "container_format"):
        allowed = storage.DISK_FORMATS if key == "disk_format" else storage.CONTAINER_FORMATS
        if value is not None and value not in allowed:
            raise ApiError(400, f"Invalid value '{value}' for parameter '{key}': Value must be "
                                f"one of {', '.join(allowed)}")
        if not creating and image.status != "queued":
            raise ApiError(403, f"Attribute {key} can be only replaced for a queued image.")
        setattr(image, key, value)
    elif key == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ApiError(400, "Invalid tags")
        image.tags = list(dict.fromkeys(value))
    else:
        if not isinstance(value, str):
            raise ApiError(400, f"Provided object does not match schema 'image': {value!r} is "
                                f"not of type 'string' (property {key})")
        image.properties[key] = value


def create_image(call: Call) -> Response:
    world = call.world
    body = call.json()
    if not isinstance(body, dict):
        raise ApiError(400, "Body expected in request.")
    for key in body:
        if key in _READ_ONLY:
            raise ApiError(403, f"Attribute '{key}' is read-only.")
    storage.check_image_quota(world, new_images=1)
    image = storage.new_image(world, "", visibility="shared")
    try:
        for key, value in body.items():
            if key == "id":
                if value in world.images:
                    raise ApiError(409, f"Image with identifier {value} already exists!")
                world.images.pop(image.id)
                image.id = str(value)
                world.images[image.id] = image
                continue
            _apply(image, key, value, creating=True, admin=call.is_admin)
    except ApiError:
        world.images.pop(image.id, None)
        raise
    return json_response(_image(image), 201, {"Location": f"{call.base_url}{V}/images/{image.id}"})


def _visible_by_default(image: Image) -> bool:
    return image.visibility in ("public", "private", "shared") or image.owner == PROJECT_ID


def list_images(call: Call) -> Response:
    args = call.request.args
    images = list(call.world.images.values())
    if "os_hidden" in args:
        hidden = args["os_hidden"].lower() == "true"
        images = [i for i in images if i.os_hidden == hidden]
    else:
        images = [i for i in images if not i.os_hidden]
    if "visibility" in args and args["visibility"] != "all":
        images = [i for i in images if i.visibility == args["visibility"]]
    else:
        images = [i for i in images if _visible_by_default(i)]
    simple = {"name": "name", "status": "status", "owner": "owner", "id": "id",
              "disk_format": "disk_format", "container_format": "container_format"}
    for arg, attr in simple.items():
        if arg in args:
            wanted = args[arg]
            if wanted.startswith("in:"):
                options = set(wanted[3:].split(","))
                images = [i for i in images if str(getattr(i, attr)) in options]
            else:
                images = [i for i in images if str(getattr(i, attr)) == wanted]
    if "protected" in args:
        images = [i for i in images if i.protected == (args["protected"].lower() == "true")]
    for tag in args.getlist("tag"):
        images = [i for i in images if tag in i.tags]
    reserved = {"limit", "marker", "sort", "sort_key", "sort_dir", "tag", "os_hidden",
                "visibility", "protected", "member_status", "size_min", "size_max",
                "created_at", "updated_at", *simple}
    for key, wanted in args.items():
        if key not in reserved:
            images = [i for i in images if str(i.properties.get(key)) == wanted]
    key = args.get("sort_key", "created_at")
    reverse = args.get("sort_dir", "desc") == "desc"
    images.sort(key=lambda i: (str(getattr(i, key, "") or ""), i.id), reverse=reverse)
    if "marker" in args:
        ids = [i.id for i in images]
        if args["marker"] not in ids:
            raise ApiError(400, f"marker {args['marker']} could not be found.")
        images = images[ids.index(args["marker"]) + 1:]
    # The links keep the request's query (one value per key, the last, as webob's dict()
    # gives it); a full page gets a next link (glance/api/v2/images.py
    # ImagesController.index, ResponseSerializer.index).
    params = {k: args.getlist(k)[-1] for k in args if k != "marker"}
    query = urlencode(params)
    body: dict[str, Any] = {"first": f"/v2/images?{query}" if query else "/v2/images",
                            "schema": "/v2/schemas/images"}
    limit = int(args.get("limit", 25))
    page = images[:limit]
    if page and len(page) == limit:
        body["next"] = "/v2/images?" + urlencode({**params, "marker": page[-1].id})
    body["images"] = [_image(i) for i in page]
    return json_response(body)


def show_image(call: Call, image_id: str) -> Response:
    return json_response(_image(find_image(call.world, image_id)))


def update_image(call: Call, image_id: str) -> Response:
    image = find_image(call.world, image_id)
    content_type = call.request.headers.get("Content-Type", "")
    if "openstack-images-v2.1-json-patch" not in content_type:
        raise ApiError(415, f"Unsupported Content-Type {content_type}")
    ops = call.json()
    if not isinstance(ops, list):
        raise ApiError(400, "Request body must be a JSON array of operation objects.")
    for op in ops:
        if not isinstance(op, dict) or "path" not in op or op.get("op") not in (
            "add", "replace", "remove"
        ):
            raise ApiError(400, f"Unable to find 'op' in JSON Schema change: {op}")
        key = str(op["path"]).lstrip("/")
        if op["op"] == "remove":
            if key in _CORE:
                raise ApiError(403, f"Attribute '{key}' is read-only.")
            if key not in image.properties:
                raise ApiError(409, f"Property {key} does not exist.")
            del image.properties[key]
        else:
            if op["op"] == "replace" and key not in _CORE and key not in image.properties:
                raise ApiError(409, f"Property {key} does not exist.")
            _apply(image, key, op.get("value"), creating=False, admin=call.is_admin)
    image.updated_at = call.world.stamp()
    return json_response(_image(image))


def delete_image(call: Call, image_id: str) -> Response:
    storage.delete_image(call.world, find_image(call.world, image_id))
    return empty(204)


def put_data(call: Call, image_id: str) -> Response:
    image = find_image(call.world, image_id)
    storage.set_image_data(call.world, image, call.request.get_data(cache=True))
    return empty(204)


def get_data(call: Call, image_id: str) -> Response:
    image = find_image(call.world, image_id)
    if image.status == "deactivated" and not call.is_admin:
        # glance/api/v2/image_data.py download
        raise ApiError(403, "The requested image has been deactivated. Image data download "
                            "is forbidden.")
    if image.data is None or image.status not in ("active", "deactivated"):
        return empty(204)
    wanted = call.request.range  # Glance serves one byte range (206), as downloads resume
    if wanted is not None and len(wanted.ranges) == 1:
        bounds = wanted.range_for_length(len(image.data))
        if bounds is None:
            return Response(b"", 416, headers={"Content-Range": f"bytes */{len(image.data)}"})
        start, stop = bounds
        return Response(image.data[start:stop], 206, content_type="application/octet-stream",
                        headers={"Content-Range": f"bytes {start}-{stop - 1}/{len(image.data)}"})
    return Response(image.data, 200, content_type="application/octet-stream",
                    headers={"Content-MD5": image.checksum or ""})


def add_tag(call: Call, image_id: str, tag: str) -> Response:
    image = find_image(call.world, image_id)
    if tag not in image.tags:
        if len(tag) > 255:
            raise ApiError(400, "Tag is too long")
        image.tags.append(tag)
    return empty(204)


def remove_tag(call: Call, image_id: str, tag: str) -> Response:
    image = find_image(call.world, image_id)
    if tag not in image.tags:
        raise ApiError(404, f"Tag {tag} not found.")
    image.tags.remove(tag)
    return empty(204)


def _member(image: Image, member_id: str) -> dict[str, Any]:
    info = image.members[member_id]
    return {"image_id": image.id, "member_id": member_id, "status": info["status"],
            "created_at": info["created_at"], "updated_at": info["updated_at"],
            "schema": "/v2/schemas/member"}


def members(call: Call, image_id: str) -> Response:
    image = find_image(call.world, image_id)
    if call.request.method == "POST":
        member_id = call.json().get("member") if isinstance(call.json(), dict) else None
        if not isinstance(member_id, str) or not member_id:
            raise ApiError(400, "Member to be added not specified")
        if image.visibility != "shared":
            raise ApiError(403, f"Only shared images have members. (image {image.id} is "
                                f"{image.visibility})")
        if member_id in image.members:
            raise ApiError(409, f"Member {member_id} already exists for image {image.id}")
        stamp = call.world.stamp()
        image.members[member_id] = {"status": "pending", "created_at": stamp,
                                    "updated_at": stamp}
        return json_response(_member(image, member_id))
    return json_response({"members": [_member(image, m) for m in image.members],
                          "schema": "/v2/schemas/members"})


def member(call: Call, image_id: str, member_id: str) -> Response:
    image = find_image(call.world, image_id)
    if member_id not in image.members:
        raise ApiError(404, f"Member {member_id} not found for image {image.id}")
    if call.request.method == "DELETE":
        del image.members[member_id]
        return empty(204)
    if call.request.method == "PUT":
        status = call.json().get("status") if isinstance(call.json(), dict) else None
        if status not in ("pending", "accepted", "rejected"):
            raise ApiError(400, f"Invalid status: {status}")
        image.members[member_id].update(status=status, updated_at=call.world.stamp())
    return json_response(_member(image, member_id))


def schema(call: Call, name: str) -> Response:
    return json_response({"name": name, "properties": {}, "additionalProperties": {
        "type": "string"}, "links": []})


def info_import(call: Call) -> Response:
    return json_response({"import-methods": {"description": "Import methods available.",
                                             "type": "array", "value": []}})


def image_action(call: Call, image_id: str, action: str) -> Response:
    """glance/api/v2/image_actions.py: deactivate and reactivate (204), for the admin or a
    member of the owning project (glance/policies/image.py, ADMIN_OR_PROJECT_MEMBER); each
    is a no-op on an image already there, and refused from any other status
    (glance/domain/__init__.py ``Image.deactivate``, ``reactivate``)."""
    if action not in ("deactivate", "reactivate"):
        raise ApiError(404, "The resource could not be found.")
    image = find_image(call.world, image_id)
    if not call.is_admin and (image.owner != PROJECT_ID or image.seeded):
        raise ApiError(403, f"You are not authorized to complete {action} action.")
    source, target = (("active", "deactivated") if action == "deactivate"
                      else ("deactivated", "active"))
    if image.status not in (source, target):
        raise ApiError(403, f"Not allowed to {action} image in status '{image.status}'")
    image.status = target
    image.updated_at = call.world.stamp()
    return empty(204)


def rules() -> list[Any]:
    i = f"{V}/images/<image_id>"
    return [
        route("/image", versions, public=True),
        route("/image/versions", versions, public=True),
        route(f"{V}/images", list_images),
        route(f"{V}/images", create_image, ("POST",)),
        route(i, show_image),
        route(i, update_image, ("PATCH",)),
        route(i, delete_image, ("DELETE",)),
        route(f"{i}/file", put_data, ("PUT",)),
        route(f"{i}/file", get_data),
        route(f"{i}/actions/<action>", image_action, ("POST",)),
        route(f"{i}/tags/<tag>", add_tag, ("PUT",)),
        route(f"{i}/tags/<tag>", remove_tag, ("DELETE",)),
        route(f"{i}/members", members, ("GET", "POST")),
        route(f"{i}/members/<member_id>", member, ("GET", "PUT", "DELETE")),
        route(f"{V}/schemas/<name>", schema),
        route(f"{V}/info/import", info_import),
    ]



