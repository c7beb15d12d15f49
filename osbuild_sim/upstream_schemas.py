"""Nova's and Cinder's own JSON schemas, applied to the simulated cloud's requests and responses.

When the upstream ``nova`` / ``cinder`` packages are installed (the ``functional`` extra),
their request and response schemas are read once per package version, in a separate
process per package (importing both in one process collides on oslo.config options), and
cached as JSON. Validation then runs here with jsonschema, the way the upstream
``_SchemaValidator`` does it: the same draft, numeric strings accepted by minimum/maximum,
the name formats' regexes and messages taken from upstream, and the same error text.
Without the packages every check is a no-op and :func:`status` says why.

Actions are named ``<resource>.<method>`` for plain controller methods (``servers.create``)
and ``<resource>.action#<name>`` for action bodies (``servers.action#createImage``);
:func:`action_for` maps an HTTP request onto them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import jsonschema

log = logging.getLogger(__name__)

# The simulator's service name -> the upstream package whose schemas apply.
PACKAGES = {"compute": "nova", "volume": "cinder"}

# (plain-method resource, action resource, "module:Class") read by the extractor.
_CONTROLLERS: dict[str, list[tuple[str, str | None, str]]] = {
    "nova": [
        ("servers", "servers", "nova.api.openstack.compute.servers:ServersController"),
        ("console_output", "servers",
         "nova.api.openstack.compute.console_output:ConsoleOutputController"),
        ("remote_consoles", "servers",
         "nova.api.openstack.compute.remote_consoles:RemoteConsolesController"),
        ("admin_password", "servers",
         "nova.api.openstack.compute.admin_password:AdminPasswordController"),
        ("keypairs", None, "nova.api.openstack.compute.keypairs:KeypairController"),
        ("server_tags", None, "nova.api.openstack.compute.server_tags:ServerTagsController"),
        ("server_metadata", None,
         "nova.api.openstack.compute.server_metadata:ServerMetadataController"),
        ("volume_attachments", None,
         "nova.api.openstack.compute.volume_attachments:VolumeAttachmentController"),
        ("instance_actions", None,
         "nova.api.openstack.compute.instance_actions:InstanceActionsController"),
    ],
    "cinder": [
        ("volumes", "volumes", "cinder.api.v3.volumes:VolumeController"),
        ("volume_actions", "volumes", "cinder.api.contrib.volume_actions:VolumeActionsController"),
        ("volume_image_metadata", "volumes",
         "cinder.api.contrib.volume_image_metadata:VolumeImageMetadataController"),
        ("volume_admin", "volumes", "cinder.api.contrib.admin_actions:VolumeAdminController"),
        ("snapshots", "snapshots", "cinder.api.v3.snapshots:SnapshotsController"),
        ("volume_metadata", None, "cinder.api.v3.volume_metadata:VolumeMetadataController"),
        ("attachments", None, "cinder.api.v3.attachments:AttachmentsController"),
    ],
}  # fmt: skip

# Requests with a body, by path tail (after the versioned root and project id) -> action.
_ROUTES: dict[str, list[tuple[str, re.Pattern[str], str]]] = {
    service: [(method, re.compile(rf"(?:^|/){tail}/?$"), action) for method, tail, action in rows]
    for service, rows in {
        "compute": [
            ("GET", r"servers/detail", "servers.detail"),
            ("GET", r"servers", "servers.index"),
            ("GET", r"servers/[^/]+", "servers.show"),
            ("GET", r"os-keypairs", "keypairs.index"),
            ("GET", r"os-keypairs/[^/]+", "keypairs.show"),
            ("GET", r"servers/[^/]+/tags", "server_tags.index"),
            ("GET", r"servers/[^/]+/metadata", "server_metadata.index"),
            ("GET", r"servers/[^/]+/os-volume_attachments", "volume_attachments.index"),
            ("GET", r"servers/[^/]+/os-instance-actions", "instance_actions.index"),
            ("GET", r"servers/[^/]+/os-instance-actions/[^/]+", "instance_actions.show"),
            ("POST", r"servers", "servers.create"),
            ("PUT", r"servers/[^/]+", "servers.update"),
            ("POST", r"servers/[^/]+/action", "servers.action"),
            ("POST", r"os-keypairs", "keypairs.create"),
            ("PUT", r"servers/[^/]+/tags", "server_tags.update_all"),
            ("POST", r"servers/[^/]+/metadata", "server_metadata.create"),
            ("PUT", r"servers/[^/]+/metadata", "server_metadata.update_all"),
            ("PUT", r"servers/[^/]+/metadata/[^/]+", "server_metadata.update"),
            ("POST", r"servers/[^/]+/remote-consoles", "remote_consoles.create"),
            ("POST", r"servers/[^/]+/os-volume_attachments", "volume_attachments.create"),
        ],
        "volume": [
            ("POST", r"volumes", "volumes.create"),
            ("PUT", r"volumes/[^/]+", "volumes.update"),
            ("POST", r"volumes/[^/]+/action", "volumes.action"),
            ("POST", r"snapshots", "snapshots.create"),
            ("POST", r"volumes/[^/]+/metadata", "volume_metadata.create"),
            ("PUT", r"volumes/[^/]+/metadata", "volume_metadata.update_all"),
            ("POST", r"attachments", "attachments.create"),
        ],
    }.items()
}

EXTRACT_TIMEOUT = 120.0


def action_for(service: str, method: str, path: str, body: Any) -> str | None:
    """The action a request performs, or None when no upstream schema covers it."""
    for verb, pattern, action in _ROUTES.get(service, ()):
        if verb == method.upper() and pattern.search(path):
            if action.endswith(".action"):
                # Nova and Cinder dispatch an action on the body's only key.
                if not isinstance(body, dict) or len(body) != 1:
                    return None
                return f"{action}#{next(iter(body))}"
            return action
    return None


def check_request(
    service: str, method: str, path: str, microversion: tuple[int, int] | None, body: Any
) -> str | None:
    """The upstream error text for this request's body, or None."""
    if method.upper() not in ("POST", "PUT"):
        return None
    action = action_for(service, method, path, body)
    if action is None:
        return None
    return validate_request(service, action, microversion, body)


class _CallLike(Protocol):
    service: str
    microversion: tuple[int, int] | None

    @property
    def request(self) -> Any: ...


def check_call(call: _CallLike) -> str | None:
    """The simulator's hook before a handler runs: upstream's text for a refused body."""
    if call.service not in PACKAGES or call.request.method not in ("POST", "PUT"):
        return None
    if _schemas_for(call.service) is None:
        return None
    try:
        body = json.loads(call.request.get_data(cache=True) or b"null")
    except ValueError:
        return None  # the handler answers malformed JSON itself
    return check_request(
        call.service, call.request.method, call.request.path, call.microversion, body
    )


def check_response(call: _CallLike, response: Any) -> str | None:
    """The hook after a handler: a successful JSON answer that fails upstream's response schema.

    Like Nova's default ``response_validation = warn``, a mismatch is logged and kept in
    :func:`response_problems` rather than failing the request.
    """
    if call.service not in PACKAGES or not 200 <= response.status_code < 300:
        return None
    if response.mimetype != "application/json" or _schemas_for(call.service) is None:
        return None
    method, path = call.request.method, call.request.path
    try:
        request_body = json.loads(call.request.get_data(cache=True) or b"null")
        body = json.loads(response.get_data())
    except ValueError:
        return None
    action = action_for(call.service, method, path, request_body)
    if action is None:
        return None
    error = validate_response(call.service, action, call.microversion, body)
    if error is not None:
        schemas = _schemas_for(call.service)
        leaves = schemas.explain("response", action, call.microversion, body) if schemas else []
        # Upstream's own text for a oneOf failure repeats the whole body; the leaves say why.
        problem = f"{method} {path} ({action}): " + ("; ".join(sorted(set(leaves))) or error)
        # Polls repeat the same answer many times: report each distinct problem once.
        key = f"{action}: {problem.split('): ', 1)[-1]}"
        if key not in _seen_problems:
            _seen_problems.add(key)
            log.warning("simulated %s answer fails the upstream schema: %s", call.service, problem)
        _response_problems.append(problem)
    return error


def response_problems() -> list[str]:
    """Simulator answers that failed an upstream response schema, oldest first."""
    return list(_response_problems)


def validate_request(
    service: str, action: str, microversion: tuple[int, int] | str | None, body: Any
) -> str | None:
    """Upstream's error text when ``body`` fails the request schema, else None."""
    schemas = _schemas_for(service)
    return schemas.validate("request", action, microversion, body) if schemas else None


def validate_response(
    service: str, action: str, microversion: tuple[int, int] | str | None, body: Any
) -> str | None:
    """Upstream's error text when ``body`` fails the response schema, else None."""
    schemas = _schemas_for(service)
    return schemas.validate("response", action, microversion, body) if schemas else None


def status() -> dict[str, str]:
    """Per service: which upstream schemas are in force, or why none are."""
    out = {}
    for service, package in PACKAGES.items():
        schemas = _schemas_for(service)
        if schemas is None:
            out[service] = f"not validated: {_unavailable.get(service, 'unknown')}"
        else:
            out[service] = f"{package} {schemas.version}: {len(schemas.actions)} actions"
            unchecked = schemas.unchecked_formats()
            if unchecked:
                # Checked by upstream code rather than a regex: accepted here, not refused.
                out[service] += f" (formats not checked: {', '.join(unchecked)})"
    return out


# ---------------------------------------------------------------------- loading and caching

_lock = threading.Lock()
_response_problems: deque[str] = deque(maxlen=200)
_seen_problems: set[str] = set()
_loaded: dict[str, UpstreamSchemas | None] = {}
_unavailable: dict[str, str] = {}


def cache_dir() -> Path:
    explicit = os.environ.get("OSBUILD_SCHEMA_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "osbuild" / "upstream-schemas"


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _schemas_for(service: str) -> UpstreamSchemas | None:
    with _lock:
        if service not in _loaded:
            _loaded[service] = _load(service)
        return _loaded[service]


def _load(service: str) -> UpstreamSchemas | None:
    package = PACKAGES.get(service)
    if package is None:
        _unavailable[service] = "no upstream schemas for this service"
        return None
    version = package_version(package)
    if version is None:
        _unavailable[service] = f"{package} is not installed (the functional extra)"
        log.info("upstream schemas for %s: %s", service, _unavailable[service])
        return None
    # The controllers read are part of the key: a cache of an older list lacks new ones.
    read = hashlib.sha256(json.dumps(_CONTROLLERS.get(package, [])).encode()).hexdigest()
    path = cache_dir() / f"{package}-{version}-{read[:12]}.json"
    if not path.is_file():
        try:
            data = extract_in_subprocess(package)
        except RuntimeError as exc:
            _unavailable[service] = str(exc)
            log.warning("upstream schemas for %s: %s", service, exc)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    return UpstreamSchemas.from_json(json.loads(path.read_text()))


def extract_in_subprocess(package: str) -> dict[str, Any]:
    """Run the extractor for one package in its own interpreter; its JSON document."""
    argv = [
        sys.executable,
        "-W",
        "ignore",
        "-m",
        "osbuild_sim.upstream_extract",
        "extract",
        package,
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=EXTRACT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"reading {package}'s schemas took over {EXTRACT_TIMEOUT:.0f}s"
        ) from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"reading {package}'s schemas failed: {tail[0]}")
    return dict(json.loads(proc.stdout))


def reset() -> None:
    """Forget loaded schemas (tests that change the cache directory or the environment)."""
    with _lock:
        _loaded.clear()
        _unavailable.clear()
        _response_problems.clear()
        _seen_problems.clear()


# ---------------------------------------------------------------------- validation


def _version_tuple(text: str | None) -> tuple[int, int] | None:
    if text is None or text in ("", "latest"):
        return None
    major, minor = text.split(".")
    return int(major), int(minor)


@dataclass(frozen=True)
class _Entry:
    low: tuple[int, int] | None
    high: tuple[int, int] | None
    schema: dict[str, Any]

    def matches(self, version: tuple[int, int] | None) -> bool:
        if version is None:  # no microversion: only unversioned schemas apply
            return self.low is None and self.high is None
        return (self.low is None or self.low <= version) and (
            self.high is None or version <= self.high
        )


@dataclass
class UpstreamSchemas:
    """One package's schemas, the validator class its API uses, and its name formats."""

    package: str
    version: str
    draft: str
    actions: dict[str, dict[str, list[_Entry]]]
    name_formats: dict[str, dict[str, str]]
    _checker: jsonschema.FormatChecker | None = None
    _validators: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpstreamSchemas:
        actions = {
            action: {
                kind: [
                    _Entry(_version_tuple(e["min"]), _version_tuple(e["max"]), e["schema"])
                    for e in entries
                ]
                for kind, entries in kinds.items()
            }
            for action, kinds in data["actions"].items()
        }
        return cls(data["package"], data["version"], data["draft"], actions, data["formats"])

    def validate(
        self,
        kind: str,
        action: str,
        microversion: tuple[int, int] | str | None,
        body: Any,
    ) -> str | None:
        version = _version_tuple(microversion) if isinstance(microversion, str) else microversion
        for entry in self.actions.get(action, {}).get(kind, []):
            if entry.matches(version):
                error = self._check(entry.schema, body)
                if error is not None:
                    return error
        return None

    def unchecked_formats(self) -> list[str]:
        """Formats the schemas use that this validator does not check."""
        known = set(self._format_checker().checkers)
        used: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("format"), str):
                    used.add(node["format"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        for kinds in self.actions.values():
            for entries in kinds.values():
                for entry in entries:
                    walk(entry.schema)
        return sorted(used - known)

    def explain(
        self, kind: str, action: str, microversion: tuple[int, int] | str | None, body: Any
    ) -> list[str]:
        """Every leaf error (path: message) behind a failure; oneOf hides them otherwise."""
        version = _version_tuple(microversion) if isinstance(microversion, str) else microversion
        out: list[str] = []
        for entry in self.actions.get(action, {}).get(kind, []):
            if entry.matches(version):
                self._check(entry.schema, None)  # builds and caches the validator
                validator = self._validators[id(entry.schema)]
                out.extend(_leaves(validator.iter_errors(body)))
        return out

    def _check(self, schema: dict[str, Any], body: Any) -> str | None:
        key = id(schema)
        validator = self._validators.get(key)
        if validator is None:
            if self._checker is None:
                self._checker = self._format_checker()
            validator = _validator_class(self.draft)(schema, format_checker=self._checker)
            self._validators[key] = validator
        try:
            validator.validate(body)
        except jsonschema.ValidationError as ex:
            if isinstance(ex.cause, _InvalidName):
                return str(ex.cause)
            if ex.path:
                # The upstream text names the innermost field and shows its value with %s.
                return (
                    f"Invalid input for field/attribute {ex.path.pop()}. "
                    f"Value: {ex.instance}. {ex.message}"
                )
            return ex.message
        except TypeError as ex:
            return str(ex)
        return None

    def _format_checker(self) -> jsonschema.FormatChecker:
        checker = jsonschema.FormatChecker()
        checker.checks("uuid")(_is_uuid_like)
        for name, rule in self.name_formats.items():
            checker.checks(name, raises=_InvalidName)(_name_check(rule))
        return checker


def _leaves(errors: Any) -> Iterator[str]:
    for error in errors:
        if error.context:
            yield from _leaves(error.context)
        else:
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            yield f"{where}: {error.message[:200]}"


class _InvalidName(Exception):
    pass


def _name_check(rule: dict[str, str]) -> Any:
    pattern = re.compile(rule["regex"])

    def check(instance: object) -> bool:
        if isinstance(instance, str) and pattern.search(instance):
            return True
        raise _InvalidName(rule["message"])

    return check


def _is_uuid_like(instance: object) -> bool:
    # oslo.utils' rule: any spelling that round-trips through uuid.UUID, dashes optional.
    if not isinstance(instance, str):
        return True
    try:
        return str(uuid.UUID(instance)).replace("-", "") == instance.lower().replace("-", "")
    except (TypeError, ValueError, AttributeError):
        return False


@cache
def _validator_class(draft: str) -> Any:
    base = getattr(jsonschema, draft)

    def numeric(keyword: str) -> Any:
        upstream = base.VALIDATORS[keyword]

        # Both services accept numbers sent as strings ("10") for minimum and maximum.
        def check(validator: Any, bound: Any, instance: Any, schema: Any) -> Iterator[Any]:
            value = _number_from_str(instance)
            if value is None:
                return iter(())
            return upstream(validator, bound, value, schema) or iter(())

        return check

    return jsonschema.validators.extend(
        base, {"minimum": numeric("minimum"), "maximum": numeric("maximum")}
    )


def _number_from_str(value: Any) -> int | float | None:
    try:
        return int(value)
    except (ValueError, TypeError):
        try:
            return float(value)
        except (ValueError, TypeError):
            return None
