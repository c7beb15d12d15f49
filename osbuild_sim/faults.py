"""Injected faults: HTTP error rules, latency, quotas and scenario faults, from YAML or at run time.

A faults document (YAML file, dict, or ``POST /_sim/faults`` JSON body) has these keys, all
optional::

    seed: 7                       # makes `rate` draws reproducible
    rules:                        # checked in order against every API request
      - service: compute          # identity|compute|volume|image|network|any (default any)
        method: POST              # HTTP method (default: any)
        path: "/servers$"         # regex searched in the path below the service prefix
                                  # (/compute, /volume, /image, ...), e.g. "/v2.1/servers"
        body: '"/name"'           # regex searched in the request body (bodies up to 1 MiB;
                                  # e.g. one op of a Glance JSON patch: the rename)
        error: 503                # an HTTP status (500, 503, 429...), "drop" (connection
                                  # closed, request not processed) or "drop-after" (processed,
                                  # then the connection closed before the answer)
        rate: 0.5                 # probability of firing (default 1.0)
        times: 2                  # fire at most this often (default: unlimited)
        retry_after: 3            # Retry-After seconds on 429/503 (default 1)
        latency: 0.05             # real seconds added before answering (may be used alone)
    quotas:                       # replace the default limits (-1 = unlimited)
      compute: {instances: 10, cores: 20, ram: 51200, key_pairs: 100}
      volume: {volumes: 10, gigabytes: 1000, snapshots: 10}
      image: {image_count_total: -1, image_size_total: -1}   # size in MiB, like Glance
    guest:                        # osbuild_sim.guest.GuestScenario for matching servers
      - {name: "builder$", times: 1, scenario: {fail_stage: cloudbaseinit}}
      # Windows' own breaks: a reboot left pending, transient Windows Update errors, a
      # sysprep that refuses to generalize (lines for its setuperr.log)
      - {name: "builder$", scenario: {pending_reboot_after: updates, update_errors: 2}}
      - {name: "builder$", scenario: {sysprep_errors: ["SYSPRP ... not provisioned ..."]}}
    no_valid_host: [{name: ".*", times: 1}]          # server ERROR "No valid host was found."
    volume_error_from_image: [{name: "-iso$"}]       # volume -> error, with a user message
    image_killed: [{name: ".*", times: 1}]           # an image upload fails, as the real
      # services leave it: a direct PUT gets 500 and the image is queued again (Glance);
      # upload-to-image and createImage delete the image (Cinder adds a user message)
    upload_stuck: [{name: "-target$"}]               # volume stays `uploading` forever

`name` is a regex searched in the resource's name (server, volume, or image name); absent
means every resource. Scenario faults apply to resources created after they are added.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from osbuild.errors import InvalidInput
from osbuild.media import stages

# GuestScenario fields that name a guest stage.
_STAGE_FIELDS = ("fail_stage", "power_off_at_stage", "power_off_after_stage",
                 "pending_reboot_after")

SERVICES = ("identity", "compute", "volume", "image", "network", "any")
SCENARIO_KINDS = ("no_valid_host", "volume_error_from_image", "image_killed", "upload_stuck")

DEFAULT_QUOTAS: dict[str, dict[str, int]] = {
    "compute": {"instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100},
    "volume": {"volumes": 10, "gigabytes": 1000, "snapshots": 10},
    "image": {"image_count_total": -1, "image_size_total": -1},
    "network": {"port": 50},
}


@dataclass
class ErrorRule:
    service: str = "any"
    method: str | None = None
    path: str | None = None
    body: str | None = None
    error: int | str | None = None
    rate: float = 1.0
    times: int | None = None
    retry_after: int = 1
    latency: float = 0.0
    fired: int = 0

    def matches(self, service: str, method: str, path: str,
                body: Callable[[], str] = str) -> bool:
        if self.service not in ("any", service):
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path and not re.search(self.path, path):
            return False
        return not (self.body and not re.search(self.body, body()))

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass
class Targeted:
    """A scenario fault for resources whose name matches `name`, at most `times` times."""

    kind: str
    name: str | None = None
    times: int | None = None
    scenario: Any = None  # GuestScenario for kind "guest"
    used: int = 0

    def take(self, resource_name: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.name and not re.search(self.name, resource_name or ""):
            return False
        self.used += 1
        return True


@dataclass
class Decision:
    """What the app does with one request: sleep `latency`, then fail with `error` or not."""

    latency: float = 0.0
    error: int | str | None = None
    retry_after: int = 1


@dataclass
class Faults:
    """The run-time fault API; thread-safe, shared by the app and the world."""

    rules: list[ErrorRule] = field(default_factory=list)
    targeted: list[Targeted] = field(default_factory=list)
    quotas: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_QUOTAS.items()}
    )
    seed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def from_source(cls, source: dict[str, Any] | str | Path | None) -> Faults:
        faults = cls()
        if source is not None:
            faults.load(source)
        return faults

    def load(self, source: dict[str, Any] | str | Path) -> None:
        """Add everything a faults document describes (dict or path to a YAML file)."""
        where = "faults"
        if isinstance(source, str | Path):
            where = str(source)
            try:
                doc = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise InvalidInput([f"cannot read faults file: {exc}"], source=where) from exc
        else:
            doc = source
        if not isinstance(doc, dict):
            raise InvalidInput(["a faults document must be a mapping"], source=where)
        unknown = set(doc) - {"seed", "rules", "quotas", "guest", *SCENARIO_KINDS}
        if unknown:
            raise InvalidInput([f"unknown key {k!r}" for k in sorted(unknown)], source=where)
        if "seed" in doc:
            with self._lock:
                self.seed = int(doc["seed"])
                self._rng = random.Random(self.seed)
        for raw in _as_list(doc.get("rules"), "rules", where):
            self.add_rule(**raw)
        for service, limits in (doc.get("quotas") or {}).items():
            self.set_quota(service, **limits)
        for raw in _as_list(doc.get("guest"), "guest", where):
            raw = dict(raw)
            self.add_guest_scenario(raw.pop("scenario", {}) or {}, **raw)
        for kind in SCENARIO_KINDS:
            for raw in _as_list(doc.get(kind), kind, where):
                self.add_scenario(kind, **raw)

    # -- run-time API --------------------------------------------------------------------
    def add_rule(self, **spec: Any) -> ErrorRule:
        known = {f.name for f in fields(ErrorRule)} - {"fired"}
        unknown = set(spec) - known
        if unknown:
            raise InvalidInput([f"rules: unknown key {k!r}" for k in sorted(unknown)])
        rule = ErrorRule(**spec)
        if rule.service not in SERVICES:
            raise InvalidInput([f"rules: service must be one of {', '.join(SERVICES)}"])
        if isinstance(rule.error, str) and rule.error not in ("drop", "drop-after"):
            if not rule.error.isdigit():
                raise InvalidInput(["rules: error must be an HTTP status, 'drop' or "
                                    "'drop-after'"])
            rule.error = int(rule.error)
        if rule.error is None and not rule.latency:
            raise InvalidInput(["rules: a rule needs an error or a latency"])
        for key in ("path", "body"):
            pattern = getattr(rule, key)
            if not pattern:
                continue
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInput([f"rules: {key} is not a valid regex: {exc}"]) from exc
        with self._lock:
            self.rules.append(rule)
        return rule

    def set_quota(self, service: str, **limits: int) -> None:
        if service not in DEFAULT_QUOTAS:
            raise InvalidInput([f"quotas: unknown service {service!r}"])
        with self._lock:
            self.quotas[service].update({k: int(v) for k, v in limits.items()})

    def add_guest_scenario(
        self, scenario: Any, *, name: str | None = None, times: int | None = None
    ) -> None:
        from osbuild_sim.guest import GuestScenario

        if isinstance(scenario, dict):
            try:
                scenario = GuestScenario(**scenario)
            except TypeError as exc:
                raise InvalidInput([f"guest: bad scenario: {exc}"]) from exc
        # A stage the guest never reaches would make the fault a silent no-op (this file's
        # own example once said `cloudbase_init`: the build it was meant to break succeeded).
        known = stages.names()
        unknown = [f"guest: {key}: {value!r} is not a guest stage (one of: {', '.join(known)})"
                   for key in _STAGE_FIELDS if (value := getattr(scenario, key)) is not None
                   and value not in known]
        if unknown:
            raise InvalidInput(unknown)
        with self._lock:
            self.targeted.append(Targeted("guest", name, times, scenario))

    def add_scenario(self, kind: str, *, name: str | None = None, times: int | None = None) -> None:
        if kind not in SCENARIO_KINDS:
            raise InvalidInput([f"unknown scenario fault {kind!r}"])
        with self._lock:
            self.targeted.append(Targeted(kind, name, times))

    def clear(self) -> None:
        """Drop every rule and scenario and restore the default quotas."""
        with self._lock:
            self.rules.clear()
            self.targeted.clear()
            self.quotas = {k: dict(v) for k, v in DEFAULT_QUOTAS.items()}

    # -- used by the simulated cloud -------------------------------------------------------
    def decide(self, service: str, method: str, path: str,
               body: Callable[[], str] = str) -> Decision:
        """``body``: reads the request body, for rules that look at it."""
        decision = Decision()
        with self._lock:
            for rule in self.rules:
                if rule.exhausted() or not rule.matches(service, method, path, body):
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                decision.latency += rule.latency
                if rule.error is not None and decision.error is None:
                    decision.error = rule.error
                    decision.retry_after = rule.retry_after
                rule.fired += 1
        return decision

    def take(self, kind: str, resource_name: str) -> Targeted | None:
        """The first unused scenario fault of `kind` for this resource name, consumed."""
        with self._lock:
            for item in self.targeted:
                if item.kind == kind and item.take(resource_name):
                    return item
        return None

    def quota(self, service: str, key: str) -> int:
        with self._lock:
            return self.quotas.get(service, {}).get(key, -1)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed,
                "rules": [
                    {f.name: getattr(r, f.name) for f in fields(ErrorRule)} for r in self.rules
                ],
                "quotas": {k: dict(v) for k, v in self.quotas.items()},
                "scenarios": [
                    {"kind": t.kind, "name": t.name, "times": t.times, "used": t.used,
                     **({"scenario": _scenario_dict(t.scenario)} if t.scenario else {})}
                    for t in self.targeted
                ],
            }


def _scenario_dict(scenario: Any) -> dict[str, Any]:
    return {f.name: getattr(scenario, f.name) for f in fields(scenario)}


def _as_list(value: Any, key: str, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInput([f"{key} must be a list of mappings"], source=where)
    return value
