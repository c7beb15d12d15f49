"""Start real Keystone and real Glance on loopback ports for the functional test tier.

Needs the ``functional`` extra (keystone, glance, uwsgi) installed in the running
interpreter's environment; installs nothing itself. Everything lives in one temporary
directory: sqlite databases, fernet and credential keys, the Glance file store and the
services' logs (``logs/keystone.log``, ``logs/glance.log``), which are kept on failure.

Developers run ``python -m osbuild.testing.realservices up`` (serve until Ctrl-C, writing a
clouds.yaml) or ``... check`` (start, smoke-test, tear down, print timings).
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from osbuild.errors import OsbuildError

REGION = "RegionOne"
SERVICE_PROJECT = "service"
ADMIN_PROJECT = "admin"
DEFAULT_DOMAIN = "default"
# Start-up from a warm cache takes about 10 s per service here; the margin covers a busy CI.
READY_TIMEOUT = 120.0
# openstacksdk and Cinder stream uploads in chunks; uWSGI's 1 MiB default refuses Cinder's.
CHUNKED_INPUT_LIMIT = 8 * 1024 * 1024
_LOG_TAIL_LINES = 30

# nova and cinder are only read for their API schemas (osbuild.sim.upstream_schemas).
REQUIRED_MODULES = ("keystone", "glance", "keystonemiddleware", "openstack", "nova", "cinder")


class RealServicesError(OsbuildError):
    """A real service could not be set up, started or reached."""


def missing_requirements() -> str | None:
    """Why the real services cannot run here, or None when they can."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if _tool("uwsgi") is None:
        missing.append("uwsgi")
    if missing:
        return (
            f"the functional extra is not installed (missing: {', '.join(missing)}); "
            "run: pip install -e '.[test,functional]'"
        )
    return None


def _tool(name: str) -> str | None:
    # Console scripts sit beside the interpreter in a venv; prefer them to anything on PATH
    # so that the services run from the same environment as the tests.
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def _require_tool(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise RealServicesError(f"{name} not found beside {sys.executable} or on PATH")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _write_ini(path: Path, sections: dict[str, dict[str, str]]) -> None:
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {value}" for key, value in values.items())
        out.append("")
    path.write_text("\n".join(out))


@dataclass
class ServiceProcess:
    """One uWSGI-served application and where its log goes."""

    name: str
    url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        # uWSGI runs a master, a worker and an HTTP router in its own session: signal the
        # group we created so that none of them outlives the test run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


@dataclass(frozen=True)
class ProjectUser:
    """A project and a user holding roles on it (:meth:`RealServices.create_project_user`)."""

    project_id: str
    project_name: str
    user_id: str
    user_name: str
    password: str
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
    secret: str

    def auth(self, auth_url: str) -> dict[str, str]:
        return {
            "auth_url": auth_url,
            "application_credential_id": self.id,
            "application_credential_secret": self.secret,
        }


@dataclass
class RealServices:
    """Real Keystone + Glance under uWSGI in ``workdir``; a context manager.

    >>> with RealServices(tmp_path) as rs:
    ...     conn = openstack.connect(auth_type="password", auth=rs.admin_auth)
    """

    workdir: Path
    ready_timeout: float = READY_TIMEOUT
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    glance_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
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

    def __enter__(self) -> RealServices:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        reason = missing_requirements()
        if reason:
            raise RealServicesError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        try:
            began = time.monotonic()
            self._start_keystone()
            self._bootstrap_image_service()
            self._start_glance()
            self.timings["startup_total"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for svc in (self.glance, self.keystone):
            if svc is not None:
                svc.stop()

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

    def create_service_user(self, name: str) -> dict[str, str]:
        """A user with admin on the service project (as Nova's and Cinder's); its auth dict."""
        conn = self.connect()
        password = secrets.token_urlsafe(18)
        service = conn.identity.find_project(SERVICE_PROJECT, ignore_missing=False)
        user = conn.identity.create_user(name=name, password=password, domain_id=DEFAULT_DOMAIN)
        admin_role = conn.identity.find_role("admin", ignore_missing=False)
        conn.identity.assign_project_role_to_user(service, user, admin_role)
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
        self, path: Path, cloud_name: str = "osbuild-real", auth: dict[str, str] | None = None
    ) -> Path:
        import yaml

        path = Path(path)
        # The file holds a password: create it private rather than chmod after writing.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(self.clouds_yaml(cloud_name, auth), fh, sort_keys=False)
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
        manage = _require_tool("keystone-manage")
        user, group = _current_user_group()
        log = self.logs_dir / "keystone.log"
        base = [manage, "--config-file", str(conf)]
        self._run("keystone", [*base, "db_sync"], env, log)
        owner = ["--keystone-user", user, "--keystone-group", group]
        self._run("keystone", [*base, "fernet_setup", *owner], env, log)
        self._run("keystone", [*base, "credential_setup", *owner], env, log)
        self._run(
            "keystone",
            [
                *base,
                "bootstrap",
                "--bootstrap-password",
                self.admin_password,
                "--bootstrap-admin-url",
                url + "/v3",
                "--bootstrap-internal-url",
                url + "/v3",
                "--bootstrap-public-url",
                url + "/v3",
                "--bootstrap-region-id",
                REGION,
            ],
            env,
            log,
            secret=self.admin_password,
        )
        self.keystone = ServiceProcess("keystone", url, log)
        self._spawn(self.keystone, port, self.keystone_app, env, chunked=False)
        self._wait_ready(self.keystone, url + "/v3", ok=(200,))
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
        manage = _require_tool("glance-manage")
        self._run("glance", [manage, "--config-file", str(conf), "db_sync"], env, log)
        self.glance = ServiceProcess("glance", url, log)
        self._spawn(self.glance, port, self.glance_app, env, chunked=True)
        self._wait_ready(self.glance, url + "/versions", ok=(200, 300))
        self._check_glance_auth()
        self.glance.startup_seconds = time.monotonic() - began
        self.timings["glance"] = self.glance.startup_seconds

    def _check_glance_auth(self) -> None:
        # /versions answers without Keystone; listing images proves keystonemiddleware and
        # the database work too.
        assert self.glance is not None
        try:
            list(self.connect().image.images(limit=1))
        except Exception as exc:
            raise RealServicesError(
                f"glance at {self.glance.url} started but refuses an authenticated request: "
                f"{exc}\n--- {self.glance.log} (tail) ---\n{_log_tail(self.glance.log)}"
            ) from None

    # ------------------------------------------------------------------ processes

    def _run(
        self,
        service: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        *,
        secret: str | None = None,
    ) -> None:
        shown = " ".join(a if a != secret else "***" for a in argv[:1] + argv[3:])
        with log.open("ab") as out:
            out.write(f"$ {shown}\n".encode())
            out.flush()
            result = subprocess.run(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, check=False
            )
        if result.returncode != 0:
            raise RealServicesError(
                f"{service}: `{shown}` exited {result.returncode}\n"
                f"--- {log} (tail) ---\n{_log_tail(log)}"
            )

    def _spawn(
        self, svc: ServiceProcess, port: int, app: str, env: dict[str, str], *, chunked: bool
    ) -> None:
        argv = [
            _require_tool("uwsgi"),
            # The --http router keeps connections alive; --http-socket drops the kept-alive
            # connections keystoneauth reuses (measured here).
            "--http", f"127.0.0.1:{port}",
            "--http-keepalive",
            "--master",
            "--processes", "1",
            "--threads", "4",
            "--enable-threads",
            "--home", sys.prefix,
            "--module", app,
            "--need-app",
            # Without it SIGTERM makes the master reload the app instead of exiting.
            "--die-on-term",
            "--buffer-size", "65535",
            "--disable-logging",
        ]  # fmt: skip
        if chunked:
            argv += ["--http-chunked-input", "--chunked-input-limit", str(CHUNKED_INPUT_LIMIT)]
        out = svc.log.open("ab")
        try:
            svc.process = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            out.close()

    def _wait_ready(self, svc: ServiceProcess, probe: str, ok: tuple[int, ...]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not svc.running():
                code = svc.process.returncode if svc.process else None
                raise RealServicesError(
                    f"{svc.name} exited with status {code} before answering {probe}\n"
                    f"--- {svc.log} (tail) ---\n{_log_tail(svc.log)}"
                )
            status = _http_status(probe)
            if isinstance(status, int) and status in ok:
                return
            last = str(status)
            time.sleep(0.25)
        raise RealServicesError(
            f"{svc.name} did not answer {probe} within {self.ready_timeout:.0f}s "
            f"(last: {last})\n--- {svc.log} (tail) ---\n{_log_tail(svc.log)}"
        )


def _http_status(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError) as exc:
        return type(exc).__name__


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


# ---------------------------------------------------------------------- developer CLI


@contextlib.contextmanager
def _workdir(path: str | None, keep: bool) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    tmp = Path(tempfile.mkdtemp(prefix="osbuild-real-"))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def smoke_check(rs: RealServices) -> dict[str, float]:
    """Token, project/user, app credential and an ISO round trip through Glance; timings."""
    import pycdlib

    timings: dict[str, float] = {}
    began = time.monotonic()
    who = rs.create_project_user("smoke", "smoke-user")
    cred = rs.create_application_credential(who, "smoke-cred")
    conn = rs.connect(cred.auth(rs.auth_url))
    conn.authorize()
    timings["identity"] = time.monotonic() - began

    began = time.monotonic()
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3)
    payload = b"osbuild smoke\n"
    import io

    iso.add_fp(io.BytesIO(payload), len(payload), "/SMOKE.TXT;1", joliet_path="/smoke.txt")
    buf = io.BytesIO()
    iso.write_fp(buf)
    iso.close()
    image = conn.image.create_image(
        name="osbuild-smoke",
        data=buf.getvalue(),
        disk_format="iso",
        container_format="bare",
        allow_duplicates=True,
    )
    image = conn.image.wait_for_status(image, "active", failures=["killed"], wait=60)
    conn.image.delete_image(image)
    timings["glance_iso_roundtrip"] = time.monotonic() - began
    return timings


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m osbuild.testing.realservices",
        description="Run real Keystone and Glance on loopback for osbuild's functional tier.",
    )
    parser.add_argument("action", choices=("up", "check"))
    parser.add_argument("--workdir", help="directory for databases, keys, store and logs")
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    parser.add_argument(
        "--clouds-yaml", default="clouds.yaml", help="where `up` writes clouds.yaml"
    )
    args = parser.parse_args(argv)
    try:
        with _workdir(args.workdir, args.keep or args.action == "up") as workdir:
            rs = RealServices(workdir)
            with rs:
                print(
                    f"keystone {rs.auth_url} ({rs.timings['keystone']:.1f}s), "
                    f"glance {rs.glance_url} ({rs.timings['glance']:.1f}s), logs {rs.logs_dir}",
                    flush=True,
                )
                if args.action == "check":
                    print(json.dumps({"startup": rs.timings, "check": smoke_check(rs)}))
                    return 0
                path = rs.write_clouds_yaml(Path(args.clouds_yaml))
                print(f"ready: OS_CLIENT_CONFIG_FILE={path} OS_CLOUD=osbuild-real", flush=True)
                signal.signal(signal.SIGTERM, _raise_interrupt)
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
                return 0
    except RealServicesError as exc:
        print(f"realservices: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
