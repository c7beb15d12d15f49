"""compute.last_action and what a failed capture says from it, for each Nova release's way
of recording a failed snapshot (Nova 34's is seen against real Nova in
tests/functional/test_real_nova.py; this covers the releases before it, whose
compute_snapshot_instance event fails, and clouds that hide the actions)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from openstack import exceptions as sdk_exc

from osbuild.cloud import compute

SERVER = "5c3a2f0e-0000-4000-8000-000000000001"


class _Compute:
    def __init__(self, actions: list[dict[str, Any]], *, refuse: bool = False) -> None:
        self.actions = actions
        self.refuse = refuse
        self.shown: list[str] = []

    def server_actions(self, server_id: str) -> Any:
        assert server_id == SERVER
        if self.refuse:
            raise sdk_exc.ForbiddenException("Policy doesn't allow os-instance-actions:list")
        return iter(SimpleNamespace(action=a["action"], request_id=a["request_id"])
                    for a in self.actions)

    def get_server_action(self, request_id: str, server_id: str) -> Any:
        self.shown.append(request_id)
        action = next(a for a in self.actions if a["request_id"] == request_id)
        events = [SimpleNamespace(**e) for e in action.get("events", [])]
        return SimpleNamespace(request_id=request_id, events=events,
                               message=action.get("message"))


def _conn(compute_api: _Compute) -> Any:
    return SimpleNamespace(compute=compute_api)


def _snapshot(request_id: str, **event: Any) -> dict[str, Any]:
    return {"action": "createImage", "request_id": request_id,
            "events": [{"event": "compute_snapshot_instance", "details": None, **event}]}


def test_the_latest_snapshot_is_read_and_a_failed_event_with_details_says_why() -> None:
    api = _Compute([
        _snapshot("req-new", result="Error", details="HTTPInternalServerError"),
        {"action": "stop", "request_id": "req-stop"},
        _snapshot("req-old", result="Success"),
    ])
    seen = compute.last_action(_conn(api), SERVER, "createImage")
    assert seen == compute.ServerAction("createImage", "req-new",
                                        ("compute_snapshot_instance",),
                                        "HTTPInternalServerError")
    assert api.shown == ["req-new"]  # the newest, as Nova lists them
    assert seen.why_failed(SERVER) == ("Nova's createImage (request req-new) failed in "
                                       "compute_snapshot_instance: HTTPInternalServerError")


def test_a_failed_event_without_details_says_where_the_admins_look() -> None:
    # A project member before Nova 34: the event's result, not its details (2.84, ADMIN).
    api = _Compute([_snapshot("req-1", result="Error")])
    seen = compute.last_action(_conn(api), SERVER, "createImage")
    assert seen is not None
    assert seen.why_failed(SERVER) == (
        "Nova's createImage (request req-1) failed in compute_snapshot_instance; the cloud's "
        f"admins see why with `openstack server event show {SERVER} req-1` or in "
        "nova-compute's log")


def test_no_snapshot_recorded_or_no_actions_readable_adds_nothing() -> None:
    assert compute.last_action(_conn(_Compute([{"action": "create", "request_id": "r"}])),
                               SERVER, "createImage") is None
    assert compute.last_action(_conn(_Compute([], refuse=True)), SERVER, "createImage") is None
