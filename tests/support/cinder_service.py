"""Real Cinder (API, scheduler, volume) in this one process: ``python -m ... SETTINGS.json``.

Started by :class:`tests.support.realcinder.RealCinder`, never imported by the tests:
cinder monkey-patches the process with eventlet and owns the global oslo.config object,
so it gets a process of its own (Nova gets another).

The services are built the way Cinder's own functional tests build them
(``cinder.tests.functional.functional_helpers._FunctionalTestBase``: sqlite in memory,
oslo.messaging's fake transport), with these changes for a long-lived server behind real
Keystone and Glance:

- the real ``osapi_volume`` paste app from the wheel's ``etc/cinder/api-paste.ini`` with
  ``auth_strategy = keystone`` (keystonemiddleware + CinderKeystoneContext);
- policy: an empty policy file, so Cinder's real defaults apply (the test base points at
  a permissive test policy);
- each service's heartbeat updates its own service row (``Service.service_id`` is a
  class attribute, so the last service started would get every heartbeat and the volume
  service would look down after 60 s: "No valid backend was found");
- privsep runs in-process (client mode off) instead of spawning a helper;
- the ``default`` quota class is unlimited (a test sets per-project quotas through the API);
- the volume driver is :class:`tests.support.filevolumes.FileVolumeDriver`.

The settings file holds no secret: the service user's password comes in the environment
variable ``OSBUILD_CINDER_SERVICE_PASSWORD``. When the backend is ready the process writes
``ready.json`` (port, start-up seconds) beside the settings; SIGTERM or SIGINT stops it.
"""

# ruff: noqa: I001  (cinder's monkey patching must come before anything else)
from cinder.tests.functional import functional_helpers

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import eventlet
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from cinder import context as cinder_context
from cinder import service
from cinder.db import api as db
from cinder.privsep import sys_admin_pctxt

from tests.support import filevolumes  # noqa: F401  (registers the driver's options)

CONF = cfg.CONF
PASSWORD_ENV = "OSBUILD_CINDER_SERVICE_PASSWORD"


def _paste_ini() -> str:
    candidates = [Path(sys.prefix) / "etc" / "cinder" / "api-paste.ini"]
    import cinder

    candidates.append(Path(cinder.__file__).parent.parent / "etc" / "cinder" / "api-paste.ini")
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise SystemExit("cinder's api-paste.ini not found in " + ", ".join(map(str, candidates)))


def _own_heartbeat() -> None:
    original = service.Service.report_state

    def report_state(self: Any) -> None:
        own = getattr(self, "origin_service_id", None)
        if own is None:
            return original(self)
        saved = service.Service.service_id
        service.Service.service_id = own
        try:
            return original(self)
        finally:
            service.Service.service_id = saved

    service.Service.report_state = report_state  # type: ignore[method-assign]


class CinderServer(functional_helpers._FunctionalTestBase):
    """The services of one Cinder, set up like a functional test and kept running."""

    settings: dict[str, Any] = {}

    def runTest(self) -> None:
        """Not a test: only setUp() is used."""

    def _get_flags(self) -> dict[str, dict[str, Any]]:
        s = self.settings
        work = Path(s["workdir"])
        flags = super()._get_flags()
        # Pass-through of values; 'g' is the group.
        flags.update(
            {
                "osapi_volume_listen_port": {"v": s.get("port", 0)},
                "auth_strategy": {"v": "keystone"},
                "policy_file": {"v": s["policy_file"], "g": "oslo_policy"},
                "volume_driver": {
                    "v": "tests.support.filevolumes.FileVolumeDriver",
                    "g": "backend_defaults",
                },
                "volume_backend_name": {"v": "file", "g": "backend_defaults"},
                "file_volumes_dir": {"v": s.get("volumes_dir") or str(work / "volumes")},
                "file_volumes_connection_type": {"v": s.get("connection_type", "local")},
                "image_conversion_dir": {"v": str(work / "conversion")},
                "state_path": {"v": str(work / "state")},
                "glance_api_servers": {"v": [s["glance_url"]]},
                "glance_num_retries": {"v": 2},
                # Unlimited by default; the default quota class rows are set in setUp.
                "quota_volumes": {"v": -1},
                "quota_snapshots": {"v": -1},
                "quota_gigabytes": {"v": -1},
                "quota_backups": {"v": -1},
                "quota_backup_gigabytes": {"v": -1},
                "quota_groups": {"v": -1},
                "www_authenticate_uri": {"v": s["auth_url"], "g": "keystone_authtoken"},
                "auth_url": {"v": s["auth_url"], "g": "keystone_authtoken"},
                "auth_type": {"v": "password", "g": "keystone_authtoken"},
                "username": {"v": s["username"], "g": "keystone_authtoken"},
                "password": {"v": os.environ.get(PASSWORD_ENV, ""), "g": "keystone_authtoken"},
                "project_name": {"v": s["project_name"], "g": "keystone_authtoken"},
                "user_domain_id": {"v": "default", "g": "keystone_authtoken"},
                "project_domain_id": {"v": "default", "g": "keystone_authtoken"},
                "region_name": {"v": s["region"], "g": "keystone_authtoken"},
                "service_token_roles_required": {"v": True, "g": "keystone_authtoken"},
            }
        )
        return flags

    def setUp(self) -> None:
        # The password plugin's options are registered by keystonemiddleware only when it
        # first loads the plugin; register them now so they can be set like any option.
        CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options("password"), group="keystone_authtoken"
        )
        super().setUp()

    def _start_api_service(self) -> None:
        # As the test base does (the option is registered late, by cinder's WSGI code).
        CONF.api_paste_config = _paste_ini()  # type: ignore[attr-defined]
        self.osapi = service.WSGIService("osapi_volume")
        self.osapi.start()
        self.auth_url = f"http://{self.osapi.host}:{self.osapi.port}/v3"


def _unlimited_default_quotas() -> None:
    ctxt = cinder_context.get_admin_context()
    for resource in db.quota_class_get_all_by_name(ctxt, "default"):
        if resource == "class_name":
            continue
        db.quota_class_update(ctxt, "default", resource, -1)


def _wait_for_backend(server: CinderServer, timeout: float) -> None:
    """Until the scheduler knows the volume backend's capabilities."""
    ctxt = cinder_context.get_admin_context()
    host_manager = server.scheduler.manager.driver.host_manager
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = host_manager.get_all_backend_states(ctxt)
        if any(state.total_capacity_gb for state in states):
            return
        # Ask the volume service to publish its stats now rather than at its next period.
        server.volume.manager.publish_service_capabilities(ctxt)
        eventlet.sleep(0.2)
    raise SystemExit(f"the scheduler saw no volume backend within {timeout:.0f}s")


def main(argv: list[str]) -> int:
    began = time.monotonic()
    settings_path = Path(argv[1])
    settings = json.loads(settings_path.read_text())
    CinderServer.settings = settings
    _own_heartbeat()
    sys_admin_pctxt.set_client_mode(False)

    server = CinderServer()
    server.setUp()
    # The test base captures logs in memory; the service log goes to stderr, which the
    # launcher sends to logs/cinder.log.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    _unlimited_default_quotas()
    _wait_for_backend(server, float(settings.get("backend_timeout", 60)))

    stopping = []

    def stop(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    ready = {
        "port": server.osapi.port,
        "pid": os.getpid(),
        "startup_seconds": time.monotonic() - began,
    }
    tmp = settings_path.with_name("ready.json.tmp")
    tmp.write_text(json.dumps(ready))
    tmp.replace(settings_path.with_name("ready.json"))
    logging.getLogger(__name__).info("cinder ready on port %s", server.osapi.port)

    while not stopping:
        eventlet.sleep(0.2)
    logging.getLogger(__name__).info("stopping on signal %s", stopping[0])
    for svc in server._services:
        svc.kill() if hasattr(svc, "kill") else svc.stop()
    server.osapi.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
