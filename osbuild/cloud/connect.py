"""Connections through openstacksdk's own config loader (clouds.yaml, OS_* variables)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import keystoneauth1.exceptions as ksa_exc
import openstack
import openstack.config.exceptions as config_exc
import yaml
from openstack import exceptions as sdk_exc
from openstack.config import loader
from openstack.connection import Connection

from osbuild import redact
from osbuild.cloud.clock import PACE_KEY, pace
from osbuild.errors import AuthError

__all__ = ["Connection", "api_calls", "auth_secrets", "check_auth", "cloud_identity",
           "config_file_problem", "connect", "token_roles"]

log = logging.getLogger(__name__)

# The auth settings (clouds.yaml ``auth:`` or OS_*) that are credentials, not names.
_SECRET_AUTH_KEYS = ("password", "application_credential_secret", "token", "secret",
                     "passcode", "client_secret", "access_token")


def connect(cloud: str | None = None, *, region_name: str | None = None,
            api_timeout: float = 120.0, **overrides: Any) -> Connection:
    """A connection for ``cloud`` (None: OS_CLOUD / OS_* variables / the only cloud).

    The cloud's pace (``osbuild_time_scale`` in its clouds.yaml entry, or in ``overrides``)
    sets the session's clock (:func:`osbuild.cloud.clock.session_clock`).

    Our own retry layer decides what is safe to repeat, so keystoneauth's automatic status
    code and connect retries are turned off: it would otherwise also repeat non-idempotent
    POSTs (a second builder server) on a 503.
    """
    options: dict[str, Any] = {
        "api_timeout": api_timeout,
        "timing": True,
        "connect_retries": 0,
        "status_code_retries": 0,
        # openstacksdk's defaults.json turns on 5 retries for the image service, which
        # resends an upload with an already consumed file object (an empty body).
        "image_status_code_retries": 0,
        **overrides,
    }
    if region_name:
        options["region_name"] = region_name
    problem = config_file_problem()
    if problem:
        raise AuthError([problem])
    try:
        conn = openstack.connect(cloud=cloud, load_yaml_config=True, load_envvars=True,
                                 **options)
    except ksa_exc.NoMatchingPlugin as exc:
        # `auth_type: pasword`: keystoneauth names the plugin it could not find, not the cloud.
        raise AuthError([f"{cloud or 'cloud configuration'}: auth_type {exc.name!r} is not a "
                         "keystoneauth plugin (password, v3applicationcredential, token, "
                         "...)"]) from None
    except (config_exc.OpenStackConfigException, sdk_exc.ConfigException,
            ksa_exc.MissingRequiredOptions) as exc:
        problem = f"cloud configuration: {_first_line(exc)}"
        # Without --os-cloud, openstacksdk takes the name from OS_CLOUD.
        named = cloud or os.environ.get("OS_CLOUD") or None
        if named is not None and str(exc).startswith(f"Cloud {named} was not found"):
            problem = _unknown_cloud_problem(named) + ("" if cloud else " (from OS_CLOUD)")
        elif (cloud is None and not os.environ.get("OS_AUTH_URL")
              and "auth_url" in str(exc)):
            # Nothing chosen at all: keystoneauth's "requires parameters ... auth_url" is
            # only the consequence.
            problem = ("no cloud chosen: pass --os-cloud NAME for an entry of clouds.yaml, "
                       "or set OS_CLOUD or the OS_* variables")
        elif cloud is None:
            problem += (" (no cloud chosen: pass --os-cloud NAME for an entry of clouds.yaml, "
                        "or set OS_CLOUD or the OS_* variables)")
        raise AuthError([problem]) from None
    # Known before the first request: an error about it may quote them (see check_auth).
    redact.remember(*auth_secrets(conn))
    scale = conn.config.config.get(PACE_KEY)
    if scale is not None:
        try:
            pace(scale)
        except (TypeError, ValueError):
            conn.close()
            raise AuthError([f"cloud configuration: {PACE_KEY}: must be a positive number, "
                             f"not {scale!r}"]) from None
    return conn


def auth_secrets(conn: Connection) -> list[str]:
    """The connection's credentials, which no message, log line or file may show."""
    auth = conn.config.config.get("auth") or {}
    return [str(auth[key]) for key in _SECRET_AUTH_KEYS if auth.get(key) is not None]


def config_file_problem() -> str | None:
    """What is wrong with the clouds.yaml openstacksdk would read, in one line, or None.

    openstacksdk skips a file it cannot parse with a log warning and then reports only
    "Cloud X was not found", and fails with a traceback on ``clouds:`` written as a list.
    Values are never quoted: the file holds passwords.
    """
    named = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if named and not Path(named).is_file():
        return f"OS_CLIENT_CONFIG_FILE names {named}, which is not a file"
    for path in _config_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            continue  # as openstacksdk does: the next file in its search path
        except (OSError, UnicodeDecodeError) as exc:
            return f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        return _clouds_document_problem(path, text)
    return None


def _config_files() -> list[Path]:
    """Where openstacksdk looks for clouds.yaml, in its order (the first file found wins)."""
    named = os.environ.get("OS_CLIENT_CONFIG_FILE")
    return [Path(candidate) for candidate in [named] if candidate] + \
        [Path(candidate) for candidate in loader.CONFIG_FILES]


def _unknown_cloud_problem(cloud: str) -> str:
    """openstacksdk's "Cloud X was not found." names neither the file read nor its clouds."""
    for path in _config_files():
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                break
            names = sorted(str(name) for name in (data.get("clouds") or {}))
            has = f"its clouds: {', '.join(names)}" if names else "it names no cloud"
            return f"cloud {cloud}: not in {path} ({has})"
    else:
        return (f"cloud {cloud}: no clouds.yaml found (openstacksdk looks in the working "
                "directory, ~/.config/openstack/ and /etc/openstack/; OS_CLIENT_CONFIG_FILE "
                "names another file)")
    return f"cloud {cloud}: not found in clouds.yaml"


def _clouds_document_problem(path: Path, text: str) -> str | None:
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or "syntax error"
        return f"{path}: not valid YAML{where}: {what}"
    except ValueError as exc:
        return f"{path}: not valid JSON: {_first_line(exc)}"
    if not isinstance(data, dict):
        return f"{path}: not a clouds.yaml: it must be a mapping with a 'clouds' mapping"
    clouds = data.get("clouds")
    if clouds is not None and not isinstance(clouds, dict):
        return (f"{path}: clouds: must be a mapping of cloud names to their settings "
                f"(name: {{auth: ...}}), not a {_yaml_type(clouds)}")
    for name, entry in (clouds or {}).items():
        if not isinstance(entry, dict):
            return f"{path}: clouds.{name}: must be a mapping (auth:, region_name: ...)"
        if "auth" in entry and not isinstance(entry["auth"], dict):
            return f"{path}: clouds.{name}.auth: must be a mapping (auth_url:, username: ...)"
    return None


def _yaml_type(value: object) -> str:
    return {list: "list", str: "text", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)


# What a build uses; a cloud whose catalog lacks one in the chosen region cannot build.
SERVICES = ("compute", "block-storage", "image", "network")


def check_auth(conn: Connection, cloud: str | None,
               services: tuple[str, ...] = SERVICES) -> None:
    """Authenticate now, and find ``services`` in the catalog, so wrong credentials or a
    region the cloud does not have are input errors before anything is built."""
    name = cloud or "the configured cloud"
    auth_url = str((conn.config.config.get("auth") or {}).get("auth_url") or "")
    if auth_url and urlparse(auth_url).scheme not in ("http", "https"):
        # keystoneauth would call it "Could not find requested endpoint in Service Catalog".
        # The value is not quoted: a URL may carry user:password@.
        raise AuthError([f"{name}: auth_url must be an http:// or https:// URL (the identity "
                         "service's, e.g. https://keystone.example.com:5000/v3)"])
    _authenticate(conn, name)
    problem = _catalog_problem(conn, name, services)
    if problem:
        raise AuthError([problem])


def _catalog_problem(conn: Connection, name: str, services: tuple[str, ...]) -> str | None:
    """openstacksdk only says so at the first call of a missing service, in a paragraph
    (`Service 'compute' is disabled because its configuration could not be loaded...`)."""
    missing = [service for service in services if not _endpoint(conn, service)]
    if not missing:
        return None
    region = conn.config.region_name
    interface = conn.config.interface or "public"
    where = f"region {region!r}" if region else "any region"
    try:
        auth: Any = conn.session.auth
        catalog = auth.get_access(conn.session).service_catalog.catalog
        regions = sorted({str(endpoint.get("region_id") or endpoint.get("region"))
                          for entry in catalog for endpoint in entry.get("endpoints", [])
                          if endpoint.get("region_id") or endpoint.get("region")})
    except Exception:  # the hint is a courtesy; the problem stands without it
        regions = []
    has = f"; its catalog has regions: {', '.join(regions)}" if regions else ""
    return (f"{name}: no {interface} endpoint for {', '.join(missing)} in {where} of the "
            f"service catalog (region_name, interface in clouds.yaml or OS_REGION_NAME, "
            f"--os-region-name){has}")


def _endpoint(conn: Connection, service: str) -> str | None:
    try:
        return conn.endpoint_for(service)
    except Exception:
        return None


def _authenticate(conn: Connection, name: str) -> None:
    try:
        # The session's own call: Connection.authorize() would flatten keystoneauth's
        # exception classes into one SDKException.
        conn.session.get_token()
    except ksa_exc.Unauthorized:
        raise AuthError(
            [f"{name}: authentication failed (check the credentials in clouds.yaml or OS_*)"]
        ) from None
    except ksa_exc.MissingRequiredOptions as exc:
        raise AuthError([f"{name}: {_first_line(exc)}"]) from None
    except (ksa_exc.ConnectFailure, ksa_exc.DiscoveryFailure) as exc:
        raise AuthError([f"{name}: cannot reach the identity service{_unreachable(conn, exc)}"]) \
            from None
    except (sdk_exc.SDKException, ksa_exc.ClientException) as exc:
        # Keystone's schema errors quote the offending value: a numeric password in
        # clouds.yaml comes back in the message (redacted by the CLI).
        raise AuthError([f"{name}: authentication failed: {_first_line(exc)}"]) from None
    except Exception as exc:
        # keystoneauth's plugin loaders raise a bare Exception for a missing setting
        # ("password is a required attribute"); its message names the setting, never a value.
        raise AuthError([f"{name}: incomplete auth settings in clouds.yaml or OS_*: "
                         f"{_first_line(exc)}"]) from None


def _unreachable(conn: Connection, exc: BaseException) -> str:
    """Where and why, from keystoneauth's paragraph that nests urllib3's repr of the error."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^\"'()]+)", text)
    why = errno.group(1).strip().lower() if errno else (
        "timed out" if "timed out" in text.lower() else None)
    url = urlparse(str((conn.config.config.get("auth") or {}).get("auth_url") or ""))
    if why is None or not url.hostname:
        return f": {_first_line(exc)}"
    netloc = f"{url.hostname}:{url.port}" if url.port else url.hostname  # no user:password@
    return f" at {url._replace(netloc=netloc).geturl()}: {why}"


# openstacksdk's names for a cloud that no clouds.yaml entry named (OS_* variables only).
_UNNAMED = {"", "envvars", "defaults"}


def token_roles(conn: Connection) -> frozenset[str] | None:
    """The role names of the connection's token, or None when they cannot be read."""
    try:
        auth: Any = conn.session.auth
        return frozenset(str(r) for r in auth.get_access(conn.session).role_names or ())
    except Exception:  # a hint only: whoever asks goes on without it
        log.debug("could not read the token's roles", exc_info=True)
        return None


def cloud_identity(conn: Connection, cloud: str | None = None) -> str:
    """What keys locks, state, metrics and reports for this connection's cloud.

    The clouds.yaml name (from ``--os-cloud`` or ``$OS_CLOUD``), with ``@REGION`` for any
    region but the entry's default one; for a cloud given by plain
    ``OS_*`` variables, its auth URL's host, project and region, so two unnamed clouds never
    share a family lock. Never a credential.
    """
    config = conn.config
    if cloud:
        return cloud + _region_suffix(cloud, config.region_name)
    name = str(getattr(config, "name", "") or "")
    if name not in _UNNAMED:
        return name + _region_suffix(name, config.region_name)
    auth = dict(config.config.get("auth") or {})
    url = urlparse(str(auth.get("auth_url") or ""))
    path = url.path.rstrip("/").removesuffix("/v3").removesuffix("/v2.0")
    # hostname and port only: a URL's user:password@ part must never end up in a file name.
    host = url.hostname or "unknown"
    identity = f"{host}:{url.port}{path}" if url.port else f"{host}{path}"
    project = (auth.get("project_name") or auth.get("project_id") or auth.get("tenant_name")
               or auth.get("tenant_id"))
    if project:
        identity += f"/{project}"
    if config.region_name:
        identity += f"@{config.region_name}"
    return identity


def _region_suffix(cloud: str, region: str | None) -> str:
    """``@REGION`` unless ``region`` is the clouds.yaml entry's default (its first) region.

    Each region has its own Glance and Nova: without the suffix, builds of one family in two
    regions of a cloud would share a lock (the second skipped as "already being built"),
    a state and reports. The default region keeps the bare name, as before regions counted.
    """
    if not region:
        return ""
    try:
        known = [r.region_name for r in loader.OpenStackConfig().get_all()
                 if r.name == cloud]
    except (config_exc.OpenStackConfigException, sdk_exc.ConfigException):
        known = []
    return "" if known and region == known[0] else f"@{region}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def api_calls(conn: Connection) -> dict[str, int]:
    """Requests made, by service and method, from keystoneauth's timing records."""
    counts: dict[str, int] = {}
    try:
        timings = conn.session.get_timings()
    except Exception:
        return counts
    for timing in timings:
        url = str(timing.url or "")
        path = urlparse(url).path.strip("/").split("/")
        service = _service_of(conn, url) or (path[0] if path else "?")
        key = f"{service} {timing.method}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _service_of(conn: Connection, url: str) -> str | None:
    best, best_len = None, 0
    for service in ("compute", "block-storage", "image", "network", "identity"):
        try:
            endpoint = conn.endpoint_for(service) or ""
        except Exception:
            endpoint = ""
        base = endpoint.rstrip("/")
        # Version suffixes differ between catalog and request URLs; compare the root.
        root = base.rsplit("/v", 1)[0] if "/v" in base else base
        if root and url.startswith(root) and len(root) > best_len:
            best, best_len = service, len(root)
    return best
