"""Start real Keystone and real Glance on loopback ports for the functional test tier.

Needs the ``functional`` extra (keystone, glance, uwsgi) installed in the running
interpreter's environment; installs nothing itself. Everything lives in one temporary
directory: sqlite databases, fernet and credential keys, the Glance file store and the
services' logs (``logs/keystone.log``, ``logs/glance.log``), which are kept on failure.

Developers run ``python -m tests.support.realservices up`` (serve until Ctrl-C, writing a
clouds.yaml) or ``... check`` (start, smoke-test, tear down, print timings).
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import (
    Launcher,
    RealServicesError,
    ServiceProcess,
    free_port,
    log_tail,
    require_tool,
    run_logged,
    tool,
)

REGION = "RegionOne"
SERVICE_PROJECT = "service"
ADMIN_PROJECT = "admin"
DEFAULT_DOMAIN = "default"
# Start-up from a warm cache takes about 10 s per service here; the margin covers a busy CI.
READY_TIMEOUT = 120.0

# nova and cinder are only read for their API schemas (osbuild_sim.upstream_schemas).
REQUIRED_MODULES = ("keystone", "glance", "keystonemiddleware", "openstack", "nova", "cinder")


def missing_requirements() -> str | None:
    """Why the real services cannot run here, or None when they can."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if tool("uwsgi") is None:
        missing.append("uwsgi")
    if missing:
        return (
            f"the functional extra is not installed (missing: {', '.join(missing)}); "
            "run: pip install -e '.[test,functional]'"
        )
    return None


def _write_ini(path: Path, sections: dict[str, dict[str, str]]) -> None:
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {value}" for key, value in values.items())
        out.append("")
    path.write_text("\n".join(out))


@dataclass(frozen=True)
class ProjectUser:
    """A project and a user holding roles on it (:meth:`RealServices.create_project_user`)."""

    project_id: str
    project_name: str
    user_id: str
    user_name: str
    password: str = field(repr=False)
    domain_id: str = DEFAULT_DOMAIN

    def auth(self, auth_url: str, *, by_id: bool = False) -> dict[str, str]:
        """Password auth for openstacksdk/clouds.yaml, the project scoped by id or by name."""
        scope = (
            {"project_id": self.project_id}
            if by_id
            else {"project_name": self.project_name, "project_domain_id": self.domain_id}
        )
        return {
            "auth_url": auth_url,
            "username": self.user_name,
            "password": self.password,
            "user_domain_id": self.domain_id,
            **scope,
        }


@dataclass(frozen=True)
class AppCredential:
    """An application credential and the auth dict that uses it."""

    id: str
    name: str
    secret: str = field(repr=False)

    def auth(self, auth_url: str) -> dict[str, str]:
        return {
            "auth_url": auth_url,
            "application_credential_id": self.id,
            "application_credential_secret": self.secret,
        }


@dataclass
class RealServices(Launcher):
    """Real Keystone + Glance under uWSGI in ``workdir``; a context manager.

    >>> with RealServices(tmp_path) as rs:
    ...     conn = openstack.connect(auth_type="password", auth=rs.admin_auth)
    """

    workdir: Path
    ready_timeout: float = READY_TIMEOUT
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    glance_password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    # The WSGI applications served; tests point one at a broken module to prove that a
    # service that does not come up is reported with its log.
    keystone_app: str = "keystone.wsgi.api:application"
    glance_app: str = "glance.wsgi.api:application"
    keystone: ServiceProcess | None = None
    glance: ServiceProcess | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)

    # ------------------------------------------------------------------ public API

    @property
    def auth_url(self) -> str:
        assert self.keystone is not None, "RealServices not started"
        return self.keystone.url + "/v3"

    @property
    def glance_url(self) -> str:
        assert self.glance is not None, "RealServices not started"
        return self.glance.url

    @property
    def admin_auth(self) -> dict[str, str]:
        return {
            "auth_url": self.auth_url,
            "username": "admin",
            "password": self.admin_password,
            "project_name": ADMIN_PROJECT,
            "user_domain_id": DEFAULT_DOMAIN,
            "project_domain_id": DEFAULT_DOMAIN,
        }

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    def start(self) -> None:
        reason = missing_requirements()
        if reason:
            raise RealServicesError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        began = time.monotonic()
        self._start_keystone()
        self._bootstrap_image_service()
        self._start_glance()
        self.timings["startup_total"] = time.monotonic() - began

    def stop(self) -> None:
        # A second Ctrl-C while Glance stops must not leave Keystone running.
        try:
            if self.glance is not None:
                self.glance.stop()
        finally:
            if self.keystone is not None:
                self.keystone.stop()

    def connect_with_service_token(self, auth: dict[str, str], service: dict[str, str]) -> Any:
        """An openstacksdk Connection sending ``auth``'s token plus ``service``'s as
        ``X-Service-Token``, the way Nova calls Cinder and Glance for a user."""
        import openstack
        from keystoneauth1 import loading, service_token
        from keystoneauth1 import session as ks_session

        def plugin(a: dict[str, str]) -> Any:
            return loading.get_plugin_loader(_auth_type(a)).load_from_options(**a)

        wrapped = service_token.ServiceTokenAuthWrapper(plugin(auth), plugin(service))
        return openstack.connection.Connection(
            session=ks_session.Session(auth=wrapped), region_name=REGION
        )

    def connect(self, auth: dict[str, str] | None = None) -> Any:
        """An openstacksdk Connection (admin unless ``auth`` is given)."""
        import openstack

        return openstack.connect(
            auth_type=_auth_type(auth or self.admin_auth),
            auth=auth or self.admin_auth,
            region_name=REGION,
            identity_interface="public",
        )

    def create_project_user(
        self,
        project: str,
        user: str,
        *,
        password: str | None = None,
        roles: Sequence[str] = ("member",),
    ) -> ProjectUser:
        """A new project and a user holding ``roles`` on it, in the default domain."""
        conn = self.connect()
        password = password or secrets.token_urlsafe(18)
        proj = conn.identity.create_project(name=project, domain_id=DEFAULT_DOMAIN)
        usr = conn.identity.create_user(
            name=user, password=password, domain_id=DEFAULT_DOMAIN, default_project_id=proj.id
        )
        for role_name in roles:
            role = conn.identity.find_role(role_name, ignore_missing=False)
            conn.identity.assign_project_role_to_user(proj, usr, role)
        return ProjectUser(
            project_id=proj.id,
            project_name=proj.name,
            user_id=usr.id,
            user_name=usr.name,
            password=password,
        )

    def create_application_credential(
        self, who: ProjectUser, name: str, *, secret: str | None = None
    ) -> AppCredential:
        """An application credential owned by ``who``, scoped to their project."""
        # Keystone only lets a user create their own application credentials, so
        # authenticate as that user rather than as admin.
        conn = self.connect(who.auth(self.auth_url, by_id=True))
        secret = secret or secrets.token_urlsafe(24)
        cred = conn.identity.create_application_credential(
            user=who.user_id, name=name, secret=secret
        )
        return AppCredential(id=cred.id, name=cred.name, secret=secret)

    def create_service_user(
        self, name: str, roles: Sequence[str] = ("admin", "service")
    ) -> dict[str, str]:
        """A service user (as Nova's and Cinder's) on the service project; its auth dict.

        The ``service`` role makes its token a valid service token
        (keystonemiddleware's ``service_token_roles``): Cinder lets only a service
        request delete an attachment that Nova uses (bug #2004555), and Nova sends one.
        """
        conn = self.connect()
        password = secrets.token_urlsafe(18)
        service = conn.identity.find_project(SERVICE_PROJECT, ignore_missing=False)
        user = conn.identity.create_user(name=name, password=password, domain_id=DEFAULT_DOMAIN)
        for role_name in roles:
            role = conn.identity.find_role(role_name, ignore_missing=False)
            conn.identity.assign_project_role_to_user(service, user, role)
        return {
            "auth_url": self.auth_url,
            "username": name,
            "password": password,
            "project_name": SERVICE_PROJECT,
            "user_domain_id": DEFAULT_DOMAIN,
            "project_domain_id": DEFAULT_DOMAIN,
        }

    def unregister_service(self, service_id: str) -> None:
        """Remove a service and its endpoints from the catalog."""
        conn = self.connect()
        for endpoint in list(conn.identity.endpoints(service_id=service_id)):
            conn.identity.delete_endpoint(endpoint)
        conn.identity.delete_service(service_id)

    def register_service(self, service_type: str, name: str, url: str) -> str:
        """Add a service and its public/internal/admin endpoints to the catalog; its id."""
        conn = self.connect()
        svc = conn.identity.create_service(type=service_type, name=name, is_enabled=True)
        for interface in ("public", "internal", "admin"):
            conn.identity.create_endpoint(
                service_id=svc.id, interface=interface, url=url, region_id=REGION
            )
        return str(svc.id)

    def clouds_yaml(self, cloud_name: str, auth: dict[str, str] | None = None) -> dict[str, Any]:
        """A clouds.yaml document with one cloud using ``auth`` (admin by default)."""
        auth = auth or self.admin_auth
        return {
            "clouds": {
                cloud_name: {
                    "auth_type": _auth_type(auth),
                    "auth": dict(auth),
                    "region_name": REGION,
                    "identity_api_version": 3,
                }
            }
        }

    def write_clouds_yaml(
        self, path: Path, cloud_name: str = "osbuild-real", auth: dict[str, str] | None = None,
        *, more: dict[str, dict[str, str]] | None = None,
    ) -> Path:
        """Write one cloud using ``auth`` (admin by default), plus the ``more`` clouds
        (name -> auth) in the same file."""
        import yaml

        document = self.clouds_yaml(cloud_name, auth)
        for name, other in (more or {}).items():
            document["clouds"].update(self.clouds_yaml(name, other)["clouds"])
        path = Path(path)
        # The file holds a password: create it private rather than chmod after writing.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(document, fh, sort_keys=False)
        return path

    # ------------------------------------------------------------------ Keystone

    def _start_keystone(self) -> None:
        began = time.monotonic()
        kdir = self.workdir / "keystone"
        kdir.mkdir(exist_ok=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        conf = kdir / "keystone.conf"
        _write_ini(
            conf,
            {
                "DEFAULT": {"use_stderr": "true"},
                "database": {"connection": f"sqlite:///{kdir / 'keystone.db'}"},
                "token": {"provider": "fernet"},
                "fernet_tokens": {"key_repository": str(kdir / "fernet-keys")},
                "fernet_receipts": {"key_repository": str(kdir / "fernet-keys")},
                "credential": {"key_repository": str(kdir / "credential-keys")},
            },
        )
        env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf)}
        manage = require_tool("keystone-manage")
        user, group = _current_user_group()
        log = self.logs_dir / "keystone.log"
        base = [manage, "--config-file", str(conf)]
        self._run("keystone", [*base, "db_sync"], env, log)
        owner = ["--keystone-user", user, "--keystone-group", group]
        self._run("keystone", [*base, "fernet_setup", *owner], env, log)
        self._run("keystone", [*base, "credential_setup", *owner], env, log)
        # The password goes in the environment, which only this user can read, not on the
        # command line, which `ps` shows everyone (keystone/cmd/cli.py BootStrap.__init__
        # reads OS_BOOTSTRAP_PASSWORD before --bootstrap-password).
        self._run(
            "keystone",
            [
                *base,
                "bootstrap",
                "--bootstrap-admin-url",
                url + "/v3",
                "--bootstrap-internal-url",
                url + "/v3",
                "--bootstrap-public-url",
                url + "/v3",
                "--bootstrap-region-id",
                REGION,
            ],
            {**env, "OS_BOOTSTRAP_PASSWORD": self.admin_password},
            log,
            secret=self.admin_password,
        )
        self.keystone = ServiceProcess("keystone", url, log)
        self.keystone.spawn(port, self.keystone_app, env=env, cwd=self.workdir, chunked=False)
        self.keystone.wait_ready(url + "/v3", (200,), self.ready_timeout)
        self.keystone.startup_seconds = time.monotonic() - began
        self.timings["keystone"] = self.keystone.startup_seconds

    def _bootstrap_image_service(self) -> None:
        conn = self.connect()
        service = conn.identity.create_project(
            name=SERVICE_PROJECT, domain_id=DEFAULT_DOMAIN, description="service users"
        )
        user = conn.identity.create_user(
            name="glance", password=self.glance_password, domain_id=DEFAULT_DOMAIN
        )
        admin_role = conn.identity.find_role("admin", ignore_missing=False)
        conn.identity.assign_project_role_to_user(service, user, admin_role)
        # Glance's default policies want "member" on the project for image writes; Keystone's
        # bootstrap makes admin, member and reader roles.
        self._glance_port = free_port()
        self.register_service("image", "glance", f"http://127.0.0.1:{self._glance_port}")

    # ------------------------------------------------------------------ Glance

    def _start_glance(self) -> None:
        began = time.monotonic()
        gdir = self.workdir / "glance"
        for sub in ("images", "staging", "tasks"):
            (gdir / sub).mkdir(parents=True, exist_ok=True)
        port = self._glance_port
        url = f"http://127.0.0.1:{port}"
        _write_ini(
            gdir / "glance-api.conf",
            {
                "DEFAULT": {"enabled_backends": "fs:file", "use_stderr": "true"},
                "database": {"connection": f"sqlite:///{gdir / 'glance.db'}"},
                "glance_store": {"default_backend": "fs"},
                "fs": {"filesystem_store_datadir": str(gdir / "images")},
                "os_glance_staging_store": {"filesystem_store_datadir": str(gdir / "staging")},
                "os_glance_tasks_store": {"filesystem_store_datadir": str(gdir / "tasks")},
                "keystone_authtoken": {
                    "www_authenticate_uri": self.auth_url,
                    "auth_url": self.auth_url,
                    "auth_type": "password",
                    "project_domain_id": DEFAULT_DOMAIN,
                    "user_domain_id": DEFAULT_DOMAIN,
                    "project_name": SERVICE_PROJECT,
                    "username": "glance",
                    "password": self.glance_password,
                    "region_name": REGION,
                },
                "paste_deploy": {"flavor": "keystone"},
            },
        )
        shutil.copy(_glance_paste_ini(), gdir / "glance-api-paste.ini")
        conf = gdir / "glance-api.conf"
        env = {**os.environ, "OS_GLANCE_CONFIG_DIR": str(gdir)}
        log = self.logs_dir / "glance.log"
        manage = require_tool("glance-manage")
        self._run("glance", [manage, "--config-file", str(conf), "db_sync"], env, log)
        self.glance = ServiceProcess("glance", url, log)
        self.glance.spawn(port, self.glance_app, env=env, cwd=self.workdir, chunked=True)
        self.glance.wait_ready(url + "/versions", (200, 300), self.ready_timeout)
        self._check_glance_auth()
        self.glance.startup_seconds = time.monotonic() - began
        self.timings["glance"] = self.glance.startup_seconds

    def _run(
        self,
        service: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        *,
        secret: str | None = None,
    ) -> None:
        run_logged(service, argv, env=env, log=log, cwd=self.workdir, secret=secret)

    def _check_glance_auth(self) -> None:
        # /versions answers without Keystone; listing images proves keystonemiddleware and
        # the database work too.
        assert self.glance is not None
        try:
            list(self.connect().image.images(limit=1))
        except Exception as exc:
            raise RealServicesError(
                f"glance at {self.glance.url} started but refuses an authenticated request: "
                f"{exc}\n--- {self.glance.log} (tail) ---\n{log_tail(self.glance.log)}"
            ) from None


def _auth_type(auth: dict[str, str]) -> str:
    return "v3applicationcredential" if "application_credential_id" in auth else "password"


def _current_user_group() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def _glance_paste_ini() -> Path:
    # pip installs Glance's sample configuration as data files under <prefix>/etc/glance.
    candidates = [Path(sys.prefix) / "etc" / "glance" / "glance-api-paste.ini"]
    spec = importlib.util.find_spec("glance")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent.parent / "etc" / "glance-api-paste.ini")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RealServicesError(
        "glance-api-paste.ini not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); is glance installed from a wheel?"
    )


if __name__ == "__main__":
    from tests.support.realservices_cli import main

    sys.exit(main())
