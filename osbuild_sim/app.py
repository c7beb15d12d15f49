"""The WSGI application: routing, auth, microversions, injected faults, stats, error bodies."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from osbuild_sim import (
    admin,
    compute,
    identity,
    image,
    network,
    operator,
    upstream_schemas,
    volume,
)
from osbuild_sim.http import ApiError, error_body, json_response
from osbuild_sim.world import World

log = logging.getLogger(__name__)

# service -> (header name, minimum, maximum)
MICROVERSIONS = {
    "compute": ("compute", (2, 1), (2, 100)),
    "volume": ("volume", (3, 0), (3, 71)),
}
SERVICE_PREFIXES = ("identity", "compute", "volume", "image", "network")


# The largest request body a fault rule's ``body`` pattern reads (an image upload is not one).
RULE_BODY_MAX = 1 << 20


def _small_body(request: Request) -> str:
    """The request's body as text for a fault rule, kept for the handler; "" when larger
    than RULE_BODY_MAX or of unknown length (chunked: an upload)."""
    if request.content_length is None or request.content_length > RULE_BODY_MAX:
        return ""
    return request.get_data(cache=True).decode("utf-8", "replace")


@dataclass
class Call:
    """One request as the handlers see it."""

    request: Request
    world: World
    app: SimApp
    service: str
    microversion: tuple[int, int] | None = None
    token: identity.Token | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # The request's id, in its response's header and in the instance actions it starts.
    request_id: str = field(default_factory=lambda: "req-" + _request_id())

    @property
    def base_url(self) -> str:
        return self.app.base_url

    def json(self) -> Any:
        data = self.request.get_data(cache=True)
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ApiError(400, "Malformed request body") from exc

    def at_least(self, major: int, minor: int) -> bool:
        return self.microversion is not None and self.microversion >= (major, minor)

    @property
    def is_admin(self) -> bool:
        """Whether the token passes the services' default admin-only policy rules."""
        return self.token is not None and self.token.is_admin

    def args(self) -> dict[str, str]:
        return {k: v for k, v in self.request.args.items()}


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    injected_errors: Counter[str] = field(default_factory=Counter)
    injected_latency: float = 0.0

    def to_dict(self, clock_now: float) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "total_requests": sum(self.requests.values()),
            "injected_errors": dict(sorted(self.injected_errors.items())),
            "injected_latency_seconds": round(self.injected_latency, 6),
            "simulated_seconds": round(clock_now, 3),
        }


def _build_map() -> Map:
    rules: list[Rule] = []
    for module in (identity, compute, volume, image, network, admin, operator):
        rules.extend(module.rules())
    return Map(rules, strict_slashes=False, merge_slashes=False)


class SimApp:
    def __init__(self, world: World, identity_store: identity.IdentityStore) -> None:
        self.world = world
        self.identity = identity_store
        self.base_url = "http://127.0.0.1"
        self.stats = Stats()
        self._stats_lock = threading.Lock()
        self._map = _build_map()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        response = self._handle(request, environ)
        return response(environ, start_response)

    def _handle(self, request: Request, environ: dict[str, Any]) -> Response:
        path = request.path
        head = path.strip("/").split("/", 1)[0]
        service = head if head in SERVICE_PREFIXES else "sim"
        with self._stats_lock:
            self.stats.requests[f"{service} {request.method}"] += 1
        if service != "sim":
            decision = self.world.faults.decide(service, request.method,
                                                path[len(head) + 1:] or "/",
                                                partial(_small_body, request))
            if decision.latency:
                with self._stats_lock:
                    self.stats.injected_latency += decision.latency
                time.sleep(decision.latency)
            if decision.error is not None and decision.error != "drop-after":
                # Drain the body first, as a real server does: an unread body left on a
                # kept-alive connection would be parsed as the client's next request.
                request.get_data(cache=False)
                with self._stats_lock:
                    self.stats.injected_errors[f"{service} {decision.error}"] += 1
                return self._injected(service, decision.error, decision.retry_after, environ)
        call = Call(request=request, world=self.world, app=self, service=service)
        try:
            adapter = self._map.bind_to_environ(environ)
            endpoint, kwargs = adapter.match()
            handler, public = endpoint
            if service != "sim" and not public:
                call.token = self.identity.check(request.headers.get("X-Auth-Token"),
                                                 self.base_url)
            self._negotiate(call)
            request.get_data(cache=True)  # read the body before taking the world lock
            # Nova's/Cinder's own request schemas when the functional extra is installed.
            if refused := upstream_schemas.check_call(call):
                raise ApiError(400, refused)
            with self.world.lock:
                self.world.advance()
                response = handler(call, **kwargs)
            upstream_schemas.check_response(call, response)
        except ApiError as err:
            response = json_response(error_body(service, err), err.status, err.headers)
        except (NotFound, MethodNotAllowed) as exc:
            missing = ApiError(exc.code or 404, "The resource could not be found."
                               if isinstance(exc, NotFound) else "Method not allowed.")
            response = json_response(error_body(service, missing), missing.status)
        except HTTPException as exc:
            other = ApiError(exc.code or 500, exc.description or "error")
            response = json_response(error_body(service, other), other.status)
        except Exception as exc:
            log.exception("simulated cloud failed on %s %s", request.method, path)
            crash = ApiError(500, f"Unexpected error in the simulated cloud: {exc}")
            response = json_response(error_body(service, crash), 500)
        for key, value in call.response_headers.items():
            response.headers[key] = value
        response.headers.setdefault("X-Openstack-Request-Id", call.request_id)
        if service != "sim" and decision.error == "drop-after":
            # The request took effect; the client never hears so (a reset after an upload).
            with self._stats_lock:
                self.stats.injected_errors[f"{service} drop-after"] += 1
            return self._injected(service, "drop", 0, environ)
        return response

    def _negotiate(self, call: Call) -> None:
        spec = MICROVERSIONS.get(call.service)
        if spec is None:
            return
        name, minimum, maximum = spec
        headers = call.request.headers
        wanted = None
        for value in headers.getlist("OpenStack-API-Version"):
            for part in value.split(","):
                words = part.strip().split()
                if len(words) == 2 and words[0].lower() == name:
                    wanted = words[1]
        if wanted is None and call.service == "compute":
            wanted = headers.get("X-OpenStack-Nova-API-Version")
        if wanted is None:
            version = minimum
        elif wanted.lower() == "latest":
            version = maximum
        else:
            try:
                major, minor = (int(x) for x in wanted.split("."))
            except ValueError as exc:
                raise ApiError(400, f"API Version String {wanted} is of invalid format. Must "
                                    "be of format MajorNum.MinorNum.") from exc
            version = (major, minor)
            if not minimum <= version <= maximum:
                raise ApiError(406, f"Version {wanted} is not supported by the API. Minimum "
                                    f"is {minimum[0]}.{minimum[1]} and maximum is "
                                    f"{maximum[0]}.{maximum[1]}.")
        call.microversion = version
        text = f"{version[0]}.{version[1]}"
        call.response_headers["OpenStack-API-Version"] = f"{name} {text}"
        call.response_headers["Vary"] = "OpenStack-API-Version"
        if call.service == "compute":
            call.response_headers["X-OpenStack-Nova-API-Version"] = text

    def _injected(self, service: str, error: int | str, retry_after: int,
                  environ: dict[str, Any]) -> Response:
        if error == "drop":
            sock = environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            # Whatever the server tries to write now fails: the client sees a reset connection.
            return Response(b"", status=500)
        status = int(error)
        headers = {"Retry-After": str(retry_after)} if status in (429, 503) else {}
        err = ApiError(status, f"Injected fault: {status} from the simulated {service} service")
        return json_response(error_body(service, err), status, headers)


def _request_id() -> str:
    import uuid

    return str(uuid.uuid4())
