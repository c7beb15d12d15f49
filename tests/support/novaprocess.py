"""The Nova process: API, conductor, scheduler, one compute and real Placement in one process.

Started by :mod:`tests.support.realnova` as ``python -m tests.support.novaprocess
SETTINGS.json``; never imported by the test process (Nova's oslo.config and eventlet
monkey-patching stay in here). Built on the functional-test base the Nova wheel ships:
sqlite databases, oslo.messaging's fake transport, real Placement, NeutronFixture for the
network. The compute API (the real ``osapi_compute`` paste app, keystonemiddleware included)
and a read-only view of NeutronFixture's networks and ports are served on one loopback port;
the bound port is written to ``SETTINGS.ready`` once everything answers.
"""

# ruff: noqa: I001  (Nova's eventlet monkey-patching must come before anything else)
from __future__ import annotations

# Nova's test package monkey-patches with eventlet when imported; nothing that must be
# patched (urllib3, requests) may be imported before it.
import nova.tests.functional  # noqa: F401

import faulthandler
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import eventlet
import eventlet.wsgi
import fixtures
from keystonemiddleware import auth_token
from nova import test
from nova.api import wsgi as nova_wsgi
from nova.api.openstack import wsgi_app
from nova.conf import CONF
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import fixtures as func_fixtures
from nova.tests.functional import integrated_helpers

from tests.support import guestcontrol, guestdriver

# Nova prefixes compute_driver with "nova.virt.".
DRIVER_MODULE = "nova.virt.osbuild_guest"
LIBVIRT_DRIVER_MODULE = "nova.virt.osbuild_libvirt"
NETWORK_PREFIX = "/networking"
LOG = logging.getLogger("osbuild.novaprocess")


def _ini(sections: dict[str, dict[str, str]]) -> str:
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {value}" for key, value in values.items())
        out.append("")
    return "\n".join(out)


def nova_conf(settings: dict[str, Any]) -> str:
    """nova.conf for the process; passwords come from the settings file (mode 0600)."""
    svc = settings["service_auth"]
    auth = {
        "auth_type": "password",
        "auth_url": svc["auth_url"],
        "username": svc["username"],
        "password": svc["password"],
        "project_name": svc["project_name"],
        "user_domain_id": svc["user_domain_id"],
        "project_domain_id": svc["project_domain_id"],
        "region_name": settings["region"],
    }
    cinder: dict[str, str] = {**auth, "os_region_name": settings["region"]}
    if settings.get("cinder_url"):
        # The block-storage endpoint, with or without its /v3; Nova adds the project.
        base = settings["cinder_url"].rstrip("/").removesuffix("/%(project_id)s")
        base = base if base.endswith("/v3") else base + "/v3"
        cinder["endpoint_template"] = base + "/%(project_id)s"
    sections: dict[str, dict[str, str]] = {
        "DEFAULT": {"compute_driver": "osbuild_guest.GuestDriver",
                    "instances_path": settings["instances_path"],
                    "state_path": settings["state_path"]},
        "api": {"auth_strategy": "keystone", "response_validation": "error"},
        "wsgi": {"api_paste_config": settings["api_paste_config"]},
        "quota": {"driver": "nova.quota.NoopQuotaDriver"},
        "keystone_authtoken": {
            **auth, "www_authenticate_uri": svc["auth_url"],
            "service_token_roles_required": "true",
        },
        "service_user": {**auth, "send_service_user_token": "true"},
        "glance": {"endpoint_override": settings["glance_url"],
                   "region_name": settings["region"]},
        "cinder": cinder,
    }
    if settings.get("virt") == "libvirt":
        sections["DEFAULT"].update({
            "compute_driver": "osbuild_libvirt.HypervisorDriver",
            "instance_name_template": settings["instance_name_template"],
            # No networking in this tier (tests.support.libvirtdriver).
            "vif_plugging_is_fatal": "false", "vif_plugging_timeout": "0",
        })
        sections["libvirt"] = {
            # TCG: this machine kind has no VMX/SVM (a kvm domain starts and hangs).
            "virt_type": "qemu", "cpu_mode": "none",
            "connection_uri": settings["libvirt_uri"],
        }
        sections["vnc"] = {"enabled": "false"}
        sections["spice"] = {"enabled": "false"}
    return _ini(sections)


class NovaStack(integrated_helpers._IntegratedTestBase):
    """Nova's integrated functional test base, set up by hand, with real Glance/Cinder."""

    CAST_AS_CALL = False
    STUB_KEYSTONE = False
    ADMIN_API = True

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__()
        self.settings = settings

    def runTest(self) -> None:
        """Not a test: only setUp() is used."""

    def setUp(self) -> None:
        # _IntegratedTestBase.setUp would stub Glance and Cinder: do its work without them.
        test.TestCase.setUp(self)
        conf_file = Path(self.settings["workdir"]) / "nova.conf"
        CONF([], project="nova", default_config_files=[str(conf_file)])
        # SQLAlchemy 2.1 deprecates noload(), which Nova uses; the WarningsFixture makes
        # that an error (servers never reach SHUTOFF). Warnings are not errors here.
        warnings.resetwarnings()
        warnings.simplefilter("ignore")
        self.placement_fixture = self.useFixture(func_fixtures.PlacementFixture())
        self.placement = self.placement_fixture.api
        self.neutron = self.useFixture(nova_fixtures.NeutronFixture(self))
        self.policy = self.useFixture(nova_fixtures.RealPolicyFixture())
        self.notifier = self.useFixture(nova_fixtures.NotificationFixture(self))
        self.conductor = self.start_service("conductor")
        self.scheduler = self.start_service("scheduler")
        self.compute = self._start_compute("compute")
        wsgi_app._setup_service(CONF.host, "osapi_compute")
        self.app = nova_wsgi.Loader().load_app("osapi_compute")


class NetworkApp:
    """Neutron's read side and port deletion, answered from NeutronFixture's own records,
    so that the network osbuild resolves is the one Nova's ports are made on."""

    def __init__(self, neutron: Any) -> None:
        self.neutron = neutron

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        parts = [p for p in environ.get("PATH_INFO", "").split("/") if p]
        if parts[:1] == ["v2.0"]:
            parts = parts[1:]
        query = _query(environ.get("QUERY_STRING", ""))
        if not parts:
            return _json(start_response, 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                                             "links": []}]})
        collections = {"networks": self.neutron._networks, "subnets": self.neutron._subnets,
                       "ports": self.neutron._ports,
                       "security-groups": self.neutron._security_groups}
        name = parts[0].removesuffix(".json")
        if name not in collections:
            return _json(start_response, 404, {"NeutronError": {
                "type": "HTTPNotFound", "message": f"{name} not found", "detail": ""}})
        records = collections[name]
        singular = name[:-1].replace("-", "_")
        key = name.replace("-", "_")
        if len(parts) == 1 and method == "GET":
            items = [r for r in list(records.values()) if _matches(r, query)]
            return _json(start_response, 200, {key: items})
        if len(parts) == 2:
            record = records.get(parts[1])
            if record is None:
                return _json(start_response, 404, {"NeutronError": {
                    "type": f"{singular.title()}NotFound",
                    "message": f"{singular} {parts[1]} could not be found.", "detail": ""}})
            if method == "GET":
                return _json(start_response, 200, {singular: record})
            if method == "DELETE" and name == "ports":
                self.neutron.delete_port(parts[1])
                start_response("204 No Content", [])
                return [b""]
        return _json(start_response, 405, {"NeutronError": {
            "type": "HTTPMethodNotAllowed", "message": "not supported", "detail": ""}})


def _query(qs: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(qs)


def _matches(record: dict[str, Any], query: dict[str, list[str]]) -> bool:
    for field, wanted in query.items():
        if field in ("fields", "limit", "marker", "sort_key", "sort_dir"):
            continue
        if field not in record:
            return False
        if str(record[field]) not in wanted and not (
            isinstance(record[field], bool) and str(record[field]).lower() in wanted
        ):
            return False
    return True


def _json(start_response: Any, status: int, body: Any) -> list[bytes]:
    reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}
    data = json.dumps(body).encode()
    start_response(f"{status} {reasons.get(status, '')}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def dispatcher(compute_app: Any, network_app: Any) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == NETWORK_PREFIX or path.startswith(NETWORK_PREFIX + "/"):
            environ["PATH_INFO"] = path[len(NETWORK_PREFIX):]
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + NETWORK_PREFIX
            return network_app(environ, start_response)
        return compute_app(environ, start_response)

    return app


class _NoOpFixture(fixtures.Fixture):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


def allow_real_libvirt() -> None:
    """Undo what Nova's test base does to keep a real libvirt compute away: the poisoned
    event thread (the process would exit silently with rc 1), the poisoned sysfs and
    generic host calls, the poisoned ``import libvirt``, and privsep without a helper
    (privsep runs in this process, as root)."""
    for name in ("PoisonFunctions", "GenericPoisonFixture", "SysFsPoisonFixture",
                 "ImportModulePoisonFixture", "PrivsepNoHelperFixture"):
        setattr(nova_fixtures, name, _NoOpFixture)
    import nova.privsep
    import os_brick.privileged

    nova.privsep.sys_admin_pctxt.set_client_mode(False)
    os_brick.privileged.default.set_client_mode(False)


def main(argv: list[str]) -> int:
    settings_path = Path(argv[0])
    # `kill -USR1 <pid>`: every thread's stack to nova.log (a hung compute says where).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    faulthandler.enable()
    settings = json.loads(settings_path.read_text())
    workdir = Path(settings["workdir"])
    os.environ[guestcontrol.STATE_ENV] = settings["guest_state"]
    os.environ[guestcontrol.CONTROL_ENV] = settings["guest_control"]
    shutil.copy(settings["paste_source"], settings["api_paste_config"])
    for folder in ("instances_path", "state_path"):  # the libvirt driver needs them to exist
        Path(settings[folder]).mkdir(parents=True, exist_ok=True)
    conf_file = workdir / "nova.conf"
    fd = os.open(conf_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(nova_conf(settings))
    sys.modules[DRIVER_MODULE] = guestdriver
    if settings.get("virt") == "libvirt":
        # This process leads its session (the launcher kills the group) and has no terminal:
        # reading a pty console (get_console_output) makes the guest's pty its controlling
        # terminal, and the kernel hangs the whole process up (SIGHUP) when the domain is
        # destroyed. nova-compute under oslo.service takes SIGHUP as "reload", never death.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        allow_real_libvirt()
        from tests.support import libvirtdriver  # imports Nova's libvirt driver

        os.environ[libvirtdriver.DOMAIN_XML_ENV] = settings["domain_xml_dir"]
        sys.modules[LIBVIRT_DRIVER_MODULE] = libvirtdriver

    began = time.monotonic()
    stack = NovaStack(settings)
    stack.setUp()
    handler = logging.FileHandler(workdir / "nova-services.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    network = auth_token.AuthProtocol(NetworkApp(stack.neutron), {})
    app = dispatcher(stack.app, network)
    sock = eventlet.listen(("127.0.0.1", int(settings.get("port") or 0)))
    port = sock.getsockname()[1]
    access_log = (workdir / "nova-access.log").open("a")
    server = eventlet.spawn(eventlet.wsgi.server, sock, app, log=access_log,
                            max_size=64, keepalive=True, socket_timeout=120)

    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = settings_path.with_suffix(".ready")
    ready.write_text(json.dumps({"port": port, "setup_seconds": time.monotonic() - began}))
    while not stopping.is_set():
        eventlet.sleep(0.2)
    server.kill()
    try:
        stack.doCleanups()
    except Exception:  # the process ends anyway
        LOG.exception("cleanup failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
