"""API errors and JSON responses shared by the simulated services."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from osbuild_sim.app import Call

# Nova and Cinder wrap faults as {"<name>": {"code": ..., "message": ...}}.
_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    500: "computeFault",
    501: "notImplemented",
    503: "serviceUnavailable",
}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """An error answer; each service renders it in its own body shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        neutron_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.neutron_type = neutron_type
        self.headers = headers or {}


def title(status: int) -> str:
    return _TITLES.get(status, "Error")


def error_body(service: str, err: ApiError) -> dict[str, Any]:
    if service in ("compute", "volume"):
        name = _FAULT_NAMES.get(err.status, "computeFault")
        if service == "volume" and err.status == 500:
            name = "volumeFault"
        fault: dict[str, Any] = {"code": err.status, "message": err.message}
        if service == "volume" and err.status == 413 and "Retry-After" in err.headers:
            # cinder/api/openstack/wsgi.py Fault: a 413 repeats Retry-After in the body.
            fault["retryAfter"] = err.headers["Retry-After"]
        return {name: fault}
    if service == "network":
        kind = err.neutron_type or title(err.status).replace(" ", "")
        return {"NeutronError": {"type": kind, "message": err.message, "detail": ""}}
    if service == "identity":
        return {"error": {"code": err.status, "message": err.message, "title": title(err.status)}}
    # Glance answers with webob's JSON error document.
    return {"code": f"{err.status} {title(err.status)}", "title": title(err.status),
            "message": err.message}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type="application/json"
    )


def empty(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(b"", status=status, headers=headers or {})


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, f"{kind} {ident} could not be found.")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def body_dict(data: Any, key: str | None = None) -> dict[str, Any]:
    """The request body (or its `key` member) as a dict, else 400 like the real services."""
    if not isinstance(data, dict):
        raise bad_request("Malformed request body")
    if key is None:
        return data
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise bad_request(f"Invalid input for field/attribute {key}.")
    return inner


def route(path: str, handler: Any, methods: tuple[str, ...] = ("GET",), *,
          public: bool = False, defaults: dict[str, Any] | None = None) -> Any:
    """A werkzeug rule whose endpoint is (handler, public); public skips token checks;
    ``defaults`` fills the handler's arguments that this path does not carry."""
    from werkzeug.routing import Rule

    return Rule(path, endpoint=(handler, public), methods=list(methods), defaults=defaults)


def links(call: Call, versioned: str, unversioned: str, tail: str) -> list[dict[str, str]]:
    """The self (versioned) and bookmark (unversioned) links Nova and Cinder put on a resource."""
    return [{"rel": "self", "href": f"{call.base_url}{versioned}/{tail}"},
            {"rel": "bookmark", "href": f"{call.base_url}{unversioned}/{tail}"}]


class HasMetadata(Protocol):
    metadata: dict[str, str]


MetadataValues = Callable[[dict[str, Any]], dict[str, str]]


def metadata_collection(call: Call, owner: HasMetadata, values: MetadataValues) -> Response:
    """GET, POST (merge) or PUT (replace) a server's or volume's ``metadata``; ``values``
    checks or converts the request's entries the way that service does."""
    method = call.request.method
    if method in ("POST", "PUT"):
        new = values(body_dict(call.json(), "metadata"))
        if method == "PUT":
            owner.metadata = new
        else:
            owner.metadata.update(new)
    return json_response({"metadata": dict(owner.metadata)})


def metadata_item(call: Call, owner: HasMetadata, key: str, values: MetadataValues, *,
                  missing: str, deleted: int) -> Response:
    """GET, PUT or DELETE one ``meta`` key; ``missing`` is the 404 text, ``deleted`` the
    status a deletion answers."""
    method = call.request.method
    if method == "PUT":
        owner.metadata.update(values(body_dict(call.json(), "meta")))
        return json_response({"meta": {key: owner.metadata.get(key)}})
    if key not in owner.metadata:
        raise ApiError(404, missing)
    if method == "DELETE":
        del owner.metadata[key]
        return empty(deleted)
    return json_response({"meta": {key: owner.metadata[key]}})


def microversioned_doc(base_url: str, path: str, *, ident: str, version: str,
                       min_version: str, updated: str, media_type: str) -> dict[str, Any]:
    """A version document of a microversioned API (Nova v2.1, Cinder v3)."""
    return {"id": ident, "status": "CURRENT", "version": version, "min_version": min_version,
            "updated": updated, "links": [{"rel": "self", "href": f"{base_url}{path}/"}],
            "media-types": [{"base": "application/json", "type": media_type}]}
