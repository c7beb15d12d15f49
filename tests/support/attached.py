"""The simulated cloud attached to real Keystone and real Glance ("attached" mode).

The simulated Nova, Cinder and Neutron keep running in-process, but:

- tokens are validated against the real Keystone, the way keystonemiddleware does it
  (``GET /v3/auth/tokens`` with a service token and the caller's token as subject);
- their endpoints are registered in the real catalog, so one clouds.yaml entry pointing at
  the real Keystone reaches real Glance and the simulated compute/volume/network;
- an image referenced by a request (volume from image, server imageRef, image mappings) is
  read from the real Glance, bytes included, with the caller's token, like Cinder and Nova;
- an image the simulator produces (Cinder upload-to-image, Nova createImage) is created in
  the real Glance under the same id at once (queued) and its bytes are uploaded when the
  simulated upload finishes, again with the caller's token.

Nothing in :mod:`osbuild_sim` changes: the app is wrapped and its token checker replaced.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Request

from osbuild_sim import SimCloud
from osbuild_sim.http import ApiError
from osbuild_sim.identity import Token
from osbuild_sim.records import Image
from osbuild_sim.storage import finalize_image_data
from osbuild_sim.world import PROJECT_ID
from tests.support.processes import Launcher
from tests.support.qcow2 import is_qcow2, qcow2_to_raw, raw_to_qcow2
from tests.support.realservices import RealServices

log = logging.getLogger(__name__)

ATTACHED_CLOUD = "osbuild-attached"
TOKEN_CACHE_SECONDS = 60.0
PUMP_INTERVAL = 0.05
HTTP_TIMEOUT = 60.0
# Glance image fields that are not free-form properties.
_GLANCE_CORE = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "min_disk", "min_ram", "disk_format",
    "container_format", "created_at", "updated_at", "tags", "self", "file", "schema",
    "direct_url", "locations", "stores",
})  # fmt: skip
_VOLUME_PROJECT = re.compile(r"^/volume/v3/([0-9a-f]{32})(/.*)?$")
_UNAUTHORIZED = "The request you have made requires authentication."


class KeystoneTokens:
    """Token checks against the real Keystone, with keystonemiddleware's short cache."""

    def __init__(self, auth_url: str, service_auth: dict[str, str]) -> None:
        self.auth_url = auth_url
        plugin = v3.Password(**service_auth)  # type: ignore[arg-type]
        self._session = ks_session.Session(auth=plugin)
        self._cache: dict[str, tuple[float, Token, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.validations = 0  # calls that reached Keystone, for tests

    def check(self, token_id: str | None, base_url: str) -> Token:
        if not token_id:
            raise self._refuse()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token_id)
        if hit and hit[0] > now:
            return hit[1]
        resp = self._session.get(
            f"{self.auth_url}/auth/tokens",
            headers={"X-Subject-Token": token_id},
            raise_exc=False,
        )
        self.validations += 1
        if resp.status_code != 200:
            raise self._refuse()
        body = resp.json()["token"]
        expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
        issued = datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00")).timestamp()
        roles = tuple(str(r.get("name")) for r in body.get("roles") or [])
        token = Token(token_id, (body.get("methods") or ["token"])[0], issued, expires, roles)
        with self._lock:
            self._cache[token_id] = (now + TOKEN_CACHE_SECONDS, token, body)
        return token

    def project_of(self, token_id: str) -> str | None:
        with self._lock:
            hit = self._cache.get(token_id)
        return (hit[2].get("project") or {}).get("id") if hit else None

    def _refuse(self) -> ApiError:
        base = self.auth_url.rsplit("/v3", 1)[0]
        return ApiError(401, _UNAUTHORIZED, headers={"WWW-Authenticate": f'Keystone uri="{base}"'})


@dataclass
class _Pending:
    image_id: str
    token: str


@dataclass
class GlanceBridge:
    """Moves images between the simulator's world and the real Glance."""

    sim: SimCloud
    glance_url: str
    pending: dict[str, _Pending] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _url(self, path: str) -> str:
        return f"{self.glance_url}/v2{path}"

    # -- real Glance -> world ------------------------------------------------------------------
    def mirror(self, image_id: str, token: str) -> None:
        world = self.sim.world
        with world.lock:
            if image_id in world.images:
                return
        headers = {"X-Auth-Token": token}
        meta = requests.get(self._url(f"/images/{image_id}"), headers=headers, timeout=HTTP_TIMEOUT)
        if meta.status_code != 200:
            return  # the simulator answers for an unknown image itself
        doc = meta.json()
        data = b""
        if doc.get("status") == "active":
            resp = requests.get(
                self._url(f"/images/{image_id}/file"), headers=headers, timeout=HTTP_TIMEOUT
            )
            resp.raise_for_status()
            data = resp.content
            if is_qcow2(data):
                # Nova and Cinder hand the hypervisor the disk, not the container format.
                data = qcow2_to_raw(data)
        image = Image(
            id=image_id,
            name=doc.get("name") or "",
            status=doc.get("status", "active"),
            disk_format=doc.get("disk_format"),
            container_format=doc.get("container_format"),
            visibility=doc.get("visibility", "shared"),
            protected=bool(doc.get("protected")),
            min_disk=int(doc.get("min_disk") or 0),
            min_ram=int(doc.get("min_ram") or 0),
            properties={k: v for k, v in doc.items() if k not in _GLANCE_CORE},
            tags=list(doc.get("tags") or []),
            data=data,
            owner=PROJECT_ID,
            created_at=doc.get("created_at", ""),
            updated_at=doc.get("updated_at", ""),
            # A read-only copy of a real image: leak checks on the simulator skip it.
            seeded=True,
        )
        finalize_image_data(image)
        with world.lock:
            world.images.setdefault(image_id, image)

    # -- world -> real Glance ------------------------------------------------------------------
    def publish(self, image_id: str, token: str) -> None:
        """Create the simulator's new image in the real Glance now; upload when it is done."""
        world = self.sim.world
        with world.lock:
            image = world.images.get(image_id)
            if image is None:
                return
            doc: dict[str, Any] = {
                "id": image.id,
                "name": image.name,
                "disk_format": image.disk_format or "raw",
                "container_format": image.container_format or "bare",
                "visibility": image.visibility,
                "protected": image.protected,
                "min_disk": image.min_disk,
                "min_ram": image.min_ram,
            }
            doc.update({k: str(v) for k, v in image.properties.items() if k not in _GLANCE_CORE})
        resp = requests.post(
            self._url("/images"),
            json=doc,
            headers={"X-Auth-Token": token},
            timeout=HTTP_TIMEOUT,
        )
        if resp.status_code not in (200, 201):
            self.errors.append(f"create image {image_id} in Glance: {resp.status_code} {resp.text}")
            return
        with self._lock:
            self.pending[image_id] = _Pending(image_id, token)

    def pump(self) -> None:
        """Advance the world; upload images whose simulated upload has finished."""
        world = self.sim.world
        ready: list[tuple[_Pending, Image]] = []
        with world.lock:
            world.advance()
            with self._lock:
                for item in list(self.pending.values()):
                    image = world.images.get(item.image_id)
                    if image is None or image.status in ("active", "killed"):
                        self.pending.pop(item.image_id)
                        if image is not None:
                            ready.append((item, image))
        for item, image in ready:
            self._finish(item, image)

    def _finish(self, item: _Pending, image: Image) -> None:
        headers = {"X-Auth-Token": item.token}
        if image.status == "killed":
            # Cinder and Nova delete the Glance image of an upload that failed.
            requests.delete(self._url(f"/images/{image.id}"), headers=headers, timeout=HTTP_TIMEOUT)
            return
        data = image.data or b""
        if image.disk_format == "qcow2" and not is_qcow2(data):
            # Cinder runs qemu-img convert for a qcow2 upload; real Glance checks the result.
            data = raw_to_qcow2(data)
        resp = requests.put(
            self._url(f"/images/{image.id}/file"),
            data=io.BytesIO(data),
            headers={**headers, "Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT,
        )
        if resp.status_code != 204:
            self.errors.append(f"upload image {image.id} to Glance: {resp.status_code} {resp.text}")
            return
        self.published.append(image.id)
        world = self.sim.world
        with world.lock:
            # The real Glance holds it now; the simulator reads it back (mirror) if needed.
            world.images.pop(image.id, None)


class AttachedApp:
    """WSGI wrapper around the simulator's app: mirrors images in, publishes images out."""

    def __init__(self, inner: Any, bridge: GlanceBridge) -> None:
        self.inner = inner
        self.bridge = bridge

    @property
    def base_url(self) -> str:
        return str(self.inner.base_url)

    @base_url.setter
    def base_url(self, value: str) -> None:
        self.inner.base_url = value

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        match = _VOLUME_PROJECT.match(path)
        if match:
            environ["PATH_INFO"] = f"/volume/v3/{PROJECT_ID}{match.group(2) or ''}"
        request = Request(environ)
        service = request.path.strip("/").split("/", 1)[0]
        token = request.headers.get("X-Auth-Token", "")
        body: Any = None
        if request.method in ("POST", "PUT") and service in ("compute", "volume"):
            raw = request.get_data(cache=True)
            # The simulator's app reads the body again from the environ.
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            if token:
                for image_id in _referenced_images(body):
                    self.bridge.mirror(image_id, token)
        app_iter, status, headers = run_wsgi_app(self.inner, environ, buffered=True)
        payload = b"".join(app_iter)
        if status.startswith("202") and token and isinstance(body, dict):
            new_image = _produced_image(body, payload, headers)
            if new_image:
                self.bridge.publish(new_image, token)
        start_response(status, list(headers.items()))
        return [payload]


def _referenced_images(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    found: list[str] = []
    volume = body.get("volume")
    if isinstance(volume, dict):
        found += [str(volume[k]) for k in ("imageRef", "image_id") if volume.get(k)]
    server = body.get("server")
    if isinstance(server, dict):
        if server.get("imageRef"):
            found.append(str(server["imageRef"]).rsplit("/", 1)[-1])
        for entry in server.get("block_device_mapping_v2") or []:
            if (
                isinstance(entry, dict)
                and entry.get("source_type") == "image"
                and entry.get("uuid")
            ):
                found.append(str(entry["uuid"]))
    return found


def _produced_image(body: dict[str, Any], payload: bytes, headers: Any) -> str | None:
    if "os-volume_upload_image" in body:
        try:
            return str(json.loads(payload)["os-volume_upload_image"]["image_id"])
        except (ValueError, KeyError, TypeError):
            return None
    if "createImage" in body:
        try:
            return str(json.loads(payload)["image_id"])
        except (ValueError, KeyError, TypeError):
            location = headers.get("Location") or ""
            return location.rsplit("/", 1)[-1] or None
    return None


class AttachedSim(Launcher):
    """``with AttachedSim(rs) as sim:`` a SimCloud whose identity and images are real."""

    def __init__(self, rs: RealServices, *, speed: float = 600.0, faults: Any = None) -> None:
        self.rs = rs
        self.sim = SimCloud(speed=speed, faults=faults)
        self.bridge = GlanceBridge(self.sim, rs.glance_url)
        self.tokens: KeystoneTokens | None = None
        self.service_ids: list[str] = []
        self.seeded_image_ids: list[str] = []
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        service_auth = self.rs.create_service_user(f"osbuild-sim-{id(self):x}")
        self.tokens = KeystoneTokens(self.rs.auth_url, service_auth)
        self.sim.app.identity = self.tokens  # type: ignore[assignment]  # same check() shape
        self.sim.app = AttachedApp(self.sim.app, self.bridge)  # type: ignore[assignment]
        self.sim.start()
        base = self.sim.base_url
        for service_type, name, url in (
            ("compute", "nova", f"{base}/compute/v2.1"),
            # Keystone fills in the caller's project, as for a real Cinder; AttachedApp maps
            # it onto the simulator's single project.
            ("block-storage", "cinder", f"{base}/volume/v3/%(project_id)s"),
            ("volumev3", "cinderv3", f"{base}/volume/v3/%(project_id)s"),
            ("network", "neutron", f"{base}/network"),
        ):
            self.service_ids.append(self.rs.register_service(service_type, name, url))
        self._seed_glance()
        self._pump = threading.Thread(target=self._run_pump, name="attached-pump", daemon=True)
        self._pump.start()

    def stop(self) -> None:
        self._stop.set()
        if self._pump is not None:
            self._pump.join(timeout=5)
        self.sim.stop()
        for service_id in self.service_ids:
            try:
                self.rs.unregister_service(service_id)
            except Exception as exc:  # teardown goes on; the services die with the tier anyway
                log.warning("could not unregister service %s: %s", service_id, exc)
        self.service_ids.clear()
        if self.seeded_image_ids:
            conn = self.rs.connect()
            for image_id in self.seeded_image_ids:
                conn.image.delete_image(image_id, ignore_missing=True)
            self.seeded_image_ids.clear()

    def _seed_glance(self) -> None:
        """The simulator's stand-in media, in the real Glance under the same ids, public."""
        conn = self.rs.connect()
        with self.sim.world.lock:
            seeds = [i for i in self.sim.world.images.values() if i.seeded]
        for image in seeds:
            conn.image.create_image(
                id=image.id,
                name=image.name,
                data=image.data or b"",
                disk_format=image.disk_format,
                container_format=image.container_format,
                visibility="public",
                allow_duplicates=True,
                **{k: str(v) for k, v in image.properties.items()},
            )
            self.seeded_image_ids.append(image.id)

    def _run_pump(self) -> None:
        # Clients poll the real Glance while the simulated upload runs, so nothing would
        # advance the simulator's lazy clock: a pump does it.
        while not self._stop.wait(PUMP_INTERVAL):
            try:
                self.bridge.pump()
            except Exception as exc:
                self.bridge.errors.append(f"pump: {exc}")
                log.exception("attached pump failed")

    def clouds_yaml(self, auth: dict[str, str] | None = None) -> dict[str, Any]:
        return self.rs.clouds_yaml(ATTACHED_CLOUD, auth)
