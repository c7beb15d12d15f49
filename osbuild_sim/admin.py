"""The simulator's own endpoints under /_sim: resources, faults, stats, clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from osbuild.errors import InvalidInput
from osbuild_sim.http import ApiError, json_response, route

if TYPE_CHECKING:
    from osbuild_sim.app import Call


def resources(call: Call) -> Response:
    return json_response(call.world.resources())


def faults(call: Call) -> Response:
    fault_api = call.world.faults
    if call.request.method == "POST":
        body = call.json()
        if not isinstance(body, dict):
            raise ApiError(400, "a faults document must be a JSON object")
        try:
            if body.pop("clear", False):
                fault_api.clear()
            fault_api.load(body)
        except InvalidInput as exc:
            raise ApiError(400, str(exc)) from exc
    elif call.request.method == "DELETE":
        fault_api.clear()
    return json_response(fault_api.to_dict())


def stats(call: Call) -> Response:
    return json_response(call.app.stats.to_dict(call.world.now()))


def clock(call: Call) -> Response:
    if call.request.method == "POST":
        body = call.json()
        seconds = body.get("advance", 0) if isinstance(body, dict) else 0
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ApiError(400, "advance must be a non-negative number of seconds")
        call.world.clock.advance(float(seconds))
        call.world.advance()
    return json_response({"now": call.world.now(), "speed": call.world.clock.speed})


def console(call: Call, kind: str) -> Response:
    return Response(f"<html><body>simulated {kind} console</body></html>",
                    content_type="text/html")


def rules() -> list[Any]:
    return [
        route("/_sim/resources", resources),
        route("/_sim/faults", faults, ("GET", "POST", "DELETE")),
        route("/_sim/stats", stats),
        route("/_sim/clock", clock, ("GET", "POST")),
        route("/_sim/console/<kind>", console),
    ]
