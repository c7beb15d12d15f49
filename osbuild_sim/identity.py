"""Keystone v3: password and application-credential auth, tokens, catalog, projects."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from osbuild_sim.http import ApiError, empty, json_response, route
from osbuild_sim.world import DOMAIN_ID, PROJECT_ID, PROJECT_NAME, USER_ID, USER_NAME

if TYPE_CHECKING:
    from osbuild_sim.app import Call

TOKEN_LIFETIME = 3600.0  # real seconds
REGION = "RegionOne"
_UNAUTHORIZED = "The request you have made requires authentication."
_DOMAIN = {"id": DOMAIN_ID, "name": "Default"}
_UPDATED = "2024-04-01T00:00:00Z"


# The user's roles on its project: a member, as the users osbuild runs as on a real cloud;
# so the services hide what only an admin sees (Cinder's host attributes...) and refuse
# what only an admin may do (os-hypervisors, flavor create, user list...).
ROLES = ("member", "reader")
# The cloud's admin, for the operator's own look around (`openstack --os-cloud
# osbuild-sim-admin hypervisor list`): keystone-manage bootstrap's admin has the admin role
# on the admin project, which implies member and reader.
ADMIN_USER_ID = "5b6a7c8d9e0f41a2b3c4d5e6f7a8b9c0"
ADMIN_USER_NAME = "sim-admin"
ADMIN_ROLES = ("admin", "member", "reader")


@dataclass(frozen=True)
class Token:
    id: str
    method: str
    issued: float
    expires: float
    roles: tuple[str, ...] = ROLES
    user_id: str = USER_ID

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class IdentityStore:
    """Credentials of the user (named admin, a project member) and of the cloud's admin
    (:data:`ADMIN_USER_NAME`), and their tokens."""

    def __init__(self, password: str, app_credential_id: str, app_credential_secret: str,
                 admin_password: str) -> None:
        self.password = password
        self.admin_password = admin_password
        self.app_credential_id = app_credential_id
        self.app_credential_secret = app_credential_secret
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        # How long a token lives, in seconds of `self.now` (real time unless the cloud
        # set a simulated clock); tests shorten it to prove clients re-authenticate.
        self.token_lifetime = TOKEN_LIFETIME
        self.now: Callable[[], float] = time.time

    @classmethod
    def random(cls) -> IdentityStore:
        return cls(secrets.token_urlsafe(18), secrets.token_hex(16), secrets.token_urlsafe(24),
                   secrets.token_urlsafe(18))

    def issue(self, method: str, user_id: str = USER_ID) -> Token:
        now = self.now()
        roles = ADMIN_ROLES if user_id == ADMIN_USER_ID else ROLES
        token = Token("gAAAA" + secrets.token_urlsafe(48), method, now,
                      now + self.token_lifetime, roles, user_id)
        with self._lock:
            self._tokens[token.id] = token
        return token

    @property
    def issued(self) -> int:
        """Tokens issued so far that are still on record."""
        with self._lock:
            return len(self._tokens)

    def check(self, token_id: str | None, base_url: str) -> Token:
        with self._lock:
            token = self._tokens.get(token_id or "")
        if token is None or token.expires < self.now():
            raise ApiError(401, _UNAUTHORIZED,
                           headers={"WWW-Authenticate": f'Keystone uri="{base_url}/identity"'})
        return token

    def revoke(self, token_id: str) -> bool:
        with self._lock:
            return self._tokens.pop(token_id, None) is not None


def catalog(base_url: str) -> list[dict[str, Any]]:
    services = (
        ("identity", "keystone", f"{base_url}/identity"),
        ("compute", "nova", f"{base_url}/compute/v2.1"),
        ("image", "glance", f"{base_url}/image"),
        ("volumev3", "cinderv3", f"{base_url}/volume/v3/{PROJECT_ID}"),
        ("block-storage", "cinder", f"{base_url}/volume/v3/{PROJECT_ID}"),
        ("network", "neutron", f"{base_url}/network"),
    )
    return [
        {"type": kind, "name": name, "id": f"{kind}-service",
         "endpoints": [{"id": f"{kind}-{iface}", "interface": iface, "region_id": REGION,
                        "region": REGION, "url": url}
                       for iface in ("public", "internal", "admin")]}
        for kind, name, url in services
    ]


def _version(base_url: str) -> dict[str, Any]:
    return {"id": "v3.14", "status": "stable", "updated": _UPDATED,
            "links": [{"rel": "self", "href": f"{base_url}/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


def versions(call: Call) -> Response:
    return json_response({"versions": {"values": [_version(call.base_url)]}}, 300)


def version(call: Call) -> Response:
    return json_response({"version": _version(call.base_url)})


def _project() -> dict[str, Any]:
    return {"id": PROJECT_ID, "name": PROJECT_NAME, "domain_id": DOMAIN_ID, "enabled": True,
            "description": "simulated project", "is_domain": False, "parent_id": DOMAIN_ID,
            "tags": [], "options": {}, "links": {}}


def _users() -> dict[str, str]:
    return {USER_ID: USER_NAME, ADMIN_USER_ID: ADMIN_USER_NAME}


def forbidden(action: str) -> ApiError:
    """Keystone's 403 for a policy that refuses the caller (keystone/exception.py
    ForbiddenAction)."""
    return ApiError(403, f"You are not authorized to perform the requested action: {action}.")


def _authenticate(call: Call, auth: dict[str, Any]) -> tuple[str, str]:
    """The auth method and the id of the user it authenticates."""
    store = call.app.identity
    ident = auth.get("identity") if isinstance(auth, dict) else None
    if not isinstance(ident, dict):
        raise ApiError(400, "Expecting to find identity in auth.")
    methods = ident.get("methods") or []
    if "password" in methods:
        user = (ident.get("password") or {}).get("user") or {}
        passwords = {USER_ID: store.password, ADMIN_USER_ID: store.admin_password}
        for user_id, user_name in _users().items():
            named = user.get("id") == user_id or (
                user.get("name") == user_name
                and (user.get("domain") or {}).get("id", DOMAIN_ID) == DOMAIN_ID
                and (user.get("domain") or {}).get("name", "Default") == "Default"
            )
            if named and secrets.compare_digest(str(user.get("password", "")),
                                                passwords[user_id]):
                return "password", user_id
    elif "application_credential" in methods:
        cred = ident.get("application_credential") or {}
        known = cred.get("id") == store.app_credential_id or (
            cred.get("name") == "osbuild-sim" and cred.get("user", {}).get("name") == USER_NAME
        )
        if known and secrets.compare_digest(str(cred.get("secret", "")),
                                            store.app_credential_secret):
            return "application_credential", USER_ID
    elif "token" in methods:
        token_id = (ident.get("token") or {}).get("id")
        return "token", store.check(token_id, call.base_url).user_id
    raise ApiError(401, _UNAUTHORIZED)


def _check_scope(auth: dict[str, Any]) -> None:
    scope = auth.get("scope")
    if not scope or scope == "unscoped":
        return
    project = scope.get("project") if isinstance(scope, dict) else None
    if project is None:
        if isinstance(scope, dict) and ("domain" in scope or "system" in scope):
            return
        raise ApiError(401, _UNAUTHORIZED)
    if project.get("id") not in (None, PROJECT_ID):
        raise ApiError(401, f"Project {project.get('id')} not found or not accessible.")
    if project.get("name") not in (None, PROJECT_NAME):
        raise ApiError(401, f"Could not find project: {project.get('name')}.")


def _token_body(call: Call, token: Token) -> dict[str, Any]:
    def iso(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    return {"token": {
        "methods": [token.method],
        "user": {"id": token.user_id, "name": _users()[token.user_id], "domain": _DOMAIN,
                 "password_expires_at": None},
        "audit_ids": [token.id[-22:]],
        "issued_at": iso(token.issued),
        "expires_at": iso(token.expires),
        "project": {"id": PROJECT_ID, "name": PROJECT_NAME, "domain": _DOMAIN},
        "is_domain": False,
        "roles": [{"id": f"r-{name}", "name": name} for name in token.roles],
        "catalog": catalog(call.base_url),
    }}


def issue_token(call: Call) -> Response:
    body = call.json()
    auth = body.get("auth") if isinstance(body, dict) else None
    if not isinstance(auth, dict):
        raise ApiError(400, "Expecting to find auth in request body.")
    method, user_id = _authenticate(call, auth)
    _check_scope(auth)
    token = call.app.identity.issue(method, user_id)
    return json_response(_token_body(call, token), 201, {"X-Subject-Token": token.id})


def validate_token(call: Call) -> Response:
    subject = call.app.identity.check(call.request.headers.get("X-Subject-Token"), call.base_url)
    return json_response(_token_body(call, subject), 200, {"X-Subject-Token": subject.id})


def revoke_token(call: Call) -> Response:
    if not call.app.identity.revoke(call.request.headers.get("X-Subject-Token", "")):
        raise ApiError(404, "Could not find token.")
    return empty()


def auth_catalog(call: Call) -> Response:
    return json_response({"catalog": catalog(call.base_url)})


def projects(call: Call, user_id: str | None = None) -> Response:
    return json_response({"projects": [_project()], "links": {"self": None, "next": None}})


def project(call: Call, project_id: str) -> Response:
    if project_id != PROJECT_ID:
        raise ApiError(404, f"Could not find project: {project_id}.")
    return json_response({"project": _project()})


def user(call: Call, user_id: str) -> Response:
    # identity:get_user (keystone/common/policies/user.py): an admin, or the user itself.
    if not call.is_admin and (call.token is None or call.token.user_id != user_id):
        raise forbidden("identity:get_user")
    if user_id not in _users():
        raise ApiError(404, f"Could not find user: {user_id}.")
    expires = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json_response({"user": {"id": user_id, "name": _users()[user_id],
                                   "domain_id": DOMAIN_ID, "enabled": True,
                                   "password_expires_at": expires}})


def rules() -> list[Any]:
    return [
        route("/identity", versions, public=True),
        route("/identity/v3", version, public=True),
        route("/identity/v3/auth/tokens", issue_token, ("POST",), public=True),
        route("/identity/v3/auth/tokens", validate_token, ("GET", "HEAD")),
        route("/identity/v3/auth/tokens", revoke_token, ("DELETE",)),
        route("/identity/v3/auth/catalog", auth_catalog),
        route("/identity/v3/auth/projects", projects),
        route("/identity/v3/projects", projects),
        route("/identity/v3/projects/<project_id>", project),
        route("/identity/v3/users/<user_id>", user),
        route("/identity/v3/users/<user_id>/projects", projects),
    ]
