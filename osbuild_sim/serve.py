"""SimCloud: the simulated cloud served over real HTTP on 127.0.0.1, in a background thread."""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from osbuild.atomicfile import write_atomic
from osbuild.cloud.clock import PACE_KEY
from osbuild.errors import InvalidInput
from osbuild_sim.app import SimApp
from osbuild_sim.clock import SimClock
from osbuild_sim.faults import Faults
from osbuild_sim.identity import ADMIN_USER_NAME, REGION, IdentityStore
from osbuild_sim.world import DOMAIN_ID, PROJECT_NAME, USER_NAME, World

CLOUD_NAME = "osbuild-sim"
# The same cloud as its admin, for the `openstack` client's admin-only views (osbuild itself
# runs as the project member of CLOUD_NAME and needs no more).
ADMIN_CLOUD_NAME = "osbuild-sim-admin"
DEFAULT_SPEED = 600.0


class _QuietHandler(WSGIRequestHandler):
    # Request lines would drown the CLI's output; stats() counts requests instead.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SimCloud:
    """`with SimCloud(speed=600.0) as sim: conn = sim.connect()`."""

    cloud_name = CLOUD_NAME

    def __init__(
        self,
        speed: float = DEFAULT_SPEED,
        faults: dict[str, Any] | str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float | None = None,
        work_pace: float = 1.0,
    ) -> None:
        self.clock = SimClock(speed)
        self.faults = Faults.from_source(faults)
        self.world = World(self.clock, self.faults, work_pace=work_pace)
        self.identity = IdentityStore.random()
        if token_ttl is not None:
            # Simulated seconds, like every other duration in the cloud: a 1 h token
            # expires during a 3 h build here too. Tokens then say when they expire in
            # simulated wall time, so the client trusts them until the cloud refuses one.
            self.identity.token_lifetime = token_ttl
            self.identity.now = lambda: self.clock.wall().timestamp()
        self.app = SimApp(self.world, self.identity)
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> SimCloud:
        if self._server is not None:
            return self
        printed = io.StringIO()
        try:
            with contextlib.redirect_stderr(printed):
                server = make_server(self._host, self._port, self.app, threaded=True,
                                     request_handler=_QuietHandler)
        except SystemExit as exc:
            # werkzeug prints the reason (then advice) and exits when it cannot bind; a
            # library must not do either: the reason goes into the error, once.
            reason = printed.getvalue().strip().splitlines()[:1]
            raise OSError(f"cannot listen on {self._host}:{self._port}"
                          + "".join(f": {line.lower()}" for line in reason)) from exc
        self._server = server
        self.app.base_url = f"http://{self._host}:{server.server_port}"
        self._thread = threading.Thread(target=server.serve_forever, name="osbuild-sim",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimCloud:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- public API --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulated cloud is not running")
        return self.app.base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    @property
    def password(self) -> str:
        return self.identity.password

    def auth(self, *, application_credential: bool = False,
             admin: bool = False) -> dict[str, str]:
        if admin:
            return {"auth_url": self.auth_url, "username": ADMIN_USER_NAME,
                    "password": self.identity.admin_password, "project_name": PROJECT_NAME,
                    "user_domain_id": DOMAIN_ID, "project_domain_id": DOMAIN_ID}
        if application_credential:
            return {"auth_url": self.auth_url,
                    "application_credential_id": self.identity.app_credential_id,
                    "application_credential_secret": self.identity.app_credential_secret}
        return {"auth_url": self.auth_url, "username": USER_NAME, "password": self.password,
                "project_name": PROJECT_NAME, "user_domain_id": DOMAIN_ID,
                "project_domain_id": DOMAIN_ID}

    def cloud_config(self, *, application_credential: bool = False,
                     admin: bool = False) -> dict[str, Any]:
        auth = self.auth(application_credential=application_credential, admin=admin)
        config: dict[str, Any] = {"auth": auth,
                                  "region_name": REGION, "interface": "public",
                                  "identity_api_version": 3,
                                  # The simulated cloud's pace: the client's clock follows it.
                                  PACE_KEY: self.clock.speed}
        if "application_credential_id" in auth:
            config["auth_type"] = "v3applicationcredential"
        return config

    def write_clouds_yaml(self, path: str | Path, *, application_credential: bool = False) -> Path:
        """Put the `osbuild-sim` cloud (and `osbuild-sim-admin`, the same cloud as its admin)
        into a clouds.yaml, readable by its owner only.

        An existing clouds.yaml keeps its other clouds (the file as it was is saved beside
        it as ``<name>.bak``, since YAML comments do not survive); a file that is not a
        clouds.yaml is refused, never overwritten.
        """
        path = Path(path)
        doc, previous = _existing_clouds_yaml(path)
        doc["clouds"][CLOUD_NAME] = self.cloud_config(
            application_credential=application_credential)
        doc["clouds"][ADMIN_CLOUD_NAME] = self.cloud_config(admin=True)
        others = set(doc) != {"clouds"} or set(doc["clouds"]) != {CLOUD_NAME, ADMIN_CLOUD_NAME}
        if previous is not None and others:
            write_atomic(path.with_name(path.name + ".bak"), previous, mode=0o600)
        write_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode("utf-8"), mode=0o600)
        return path

    def env(self, clouds_yaml: str | Path) -> dict[str, str]:
        """Environment for a subprocess that should use this cloud through clouds.yaml."""
        return {"OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": CLOUD_NAME}

    def connect(self, *, admin: bool = False, **kwargs: Any) -> Any:
        """An unmodified openstacksdk Connection to this cloud (as its admin if ``admin``)."""
        from openstack.connection import Connection

        config = self.cloud_config(admin=admin)
        kwargs.setdefault(PACE_KEY, self.clock.speed)
        return Connection(auth=config["auth"], region_name=REGION, interface="public",
                          identity_api_version="3", **kwargs)

    def resources(self) -> dict[str, Any]:
        return self.world.resources()

    def stats(self) -> dict[str, Any]:
        return self.app.stats.to_dict(self.clock.now())

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward and bring every state machine up to it."""
        self.clock.advance(seconds)
        self.world.advance()


def _existing_clouds_yaml(path: Path) -> tuple[dict[str, Any], bytes | None]:
    """The clouds.yaml at ``path`` as a mapping with a ``clouds`` mapping, and its bytes."""
    try:
        previous = path.read_bytes()
    except FileNotFoundError:
        return {"clouds": {}}, None
    except OSError as exc:
        raise InvalidInput([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        doc = yaml.safe_load(previous) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InvalidInput([f"{path}: not valid YAML{where}; not overwriting it"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("clouds") or {}, dict):
        raise InvalidInput([f"{path}: not a clouds.yaml (no 'clouds' mapping); "
                            "not overwriting it"])
    doc["clouds"] = dict(doc.get("clouds") or {})
    return doc, previous
