"""Durable per-build state: one JSON file per build id, replaced atomically, never a secret."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from osbuild import naming
from osbuild.atomicfile import write_atomic
from osbuild.errors import InvalidInput

log = logging.getLogger(__name__)

# 2: what each step recorded for resume moved under "records" (see _from_version_1).
# 3: "released" lists what steps deleted on purpose (_from_version_2 fills it in for a
# state past its release step).
STATE_VERSION = 3

# Version 1 kept the steps' facts at the top level; the step each belongs to.
_V1_RECORDS = {
    "render": ("nonce", "guest_stages", "config_iso_size"),
    "install": ("transcript_path", "transcript_position", "last_stage", "sysprep_reached"),
    "capture": ("image_id",),
    "publish": ("fingerprint",),
}

# Keys that would mean someone is about to persist a credential; the state is readable by
# whoever can read the state directory, and the Windows password must only ever exist in
# the guest and in memory.
_SECRET_WORDS = re.compile(r"password|secret|token|credential|private|product_key", re.I)


# The state's record of the parent a refresh patches (not a step's: it precedes them all;
# pipeline/run.py writes it).
PARENT_RECORD = "parent"


class BuildStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BuildState(BaseModel):
    """What `osbuild resume` and `osbuild gc` need to find and finish (or remove) a build."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    version: int = STATE_VERSION
    build_id: str
    family: str
    # The cloud's identity (keys locks and metrics) and the clouds.yaml name resume connects
    # with ("": the OS_* variables; None: a state written before the two were told apart).
    cloud: str
    os_cloud: str | None = None
    status: BuildStatus = BuildStatus.RUNNING
    # The step now running (or the last one that ran) and the steps that finished, in order.
    step: str | None = None
    steps_done: list[str] = Field(default_factory=list)
    spec_path: str
    spec_digest: str
    fingerprint: str | None = None
    # ``kind:role`` -> id of everything the build created ("server:builder", "volume:iso",
    # "image:config"...), recorded the moment each create call returns.
    resources: dict[str, str] = Field(default_factory=dict)
    # Keys of resources a step deleted on purpose before the build's end (the release after
    # capture, the boot test's own): a resumed build knows their absence is no loss.
    released: list[str] = Field(default_factory=list)
    image_id: str | None = None
    # Step name -> what that step recorded for a resumed build (its ``record``, and the
    # progress it saved while running); the runner writes it, each step reads its own back.
    records: dict[str, dict[str, Any]] = Field(default_factory=dict)
    host: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    started_at: datetime = Field(default_factory=_utcnow)
    updated_at: datetime = Field(default_factory=_utcnow)
    error: str | None = None
    # Where its logs and report go.
    log_dir: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # Without a version: built in code, possibly with version-1 fields (nonce=...),
            # which the migration moves; a current object goes through it unchanged.
            version = data.get("version", 1)
            if isinstance(version, int) and version > STATE_VERSION:
                raise ValueError(f"written by a newer osbuild (state version {version}, this "
                                 f"one reads up to {STATE_VERSION}); resume it with that "
                                 "version, or remove what it left with osbuild gc")
            if version == 1:
                return _from_version_1(data)
            if version == 2:
                return _from_version_2(data)
        return data

    @field_validator("build_id")
    @classmethod
    def _build_id(cls, value: str) -> str:
        if not naming.is_build_id(value):
            raise ValueError(f"{value!r} is not a build id like 20261126t031500-a1b2c3")
        return value

    @field_validator("resources", "records")
    @classmethod
    def _no_secret_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        keys = [*value, *(f"{step}.{key}" for step, record in value.items()
                          if isinstance(record, dict) for key in record)]
        bad = [key for key in keys if _SECRET_WORDS.search(key)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: secrets are never stored in state")
        return value

    @field_validator("started_at", "updated_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @property
    def is_finished(self) -> bool:
        return self.status is not BuildStatus.RUNNING

    @property
    def is_refresh(self) -> bool:
        return bool(self.records.get(PARENT_RECORD))


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 state (osbuild before step records) as the current version: same facts,
    same meaning."""
    data = dict(data)
    records: dict[str, dict[str, Any]] = {}
    for step, keys in _V1_RECORDS.items():
        # image_id and fingerprint stay at the top level too: they describe the build.
        kept = step in ("capture", "publish")
        facts = {k: (data.get(k) if kept else data.pop(k)) for k in keys if k in data}
        if any(v not in (None, "", 0, False) for v in facts.values()):
            records[step] = facts
    resolved = data.pop("resolved", None)
    if resolved:
        records["preflight"] = resolved
    data["records"] = {**records, **(data.get("records") or {})}
    data["version"] = STATE_VERSION
    return data


# What the release step (after capture) of an osbuild writing version 2 deleted.
_V2_RELEASED = ("volume:iso", "volume:virtio", "volume:config", "volume:target",
                "image:config")


def _from_version_2(data: dict[str, Any]) -> dict[str, Any]:
    """A version-2 state as the current version: one past its release step had deleted the
    builder's volumes and config image without noting it."""
    released = list(_V2_RELEASED) if "release" in (data.get("steps_done") or []) else []
    return {**data, "released": released, "version": STATE_VERSION}


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/osbuild``, else ``~/.local/state/osbuild`` (XDG base directory spec).

    The spec says a relative ``XDG_STATE_HOME`` is invalid and must be ignored.
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME", "")
    if base and os.path.isabs(base):
        return Path(base) / "osbuild"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "osbuild"


class StateStore:
    """The state directory: ``<root>/builds/<build_id>.json`` (0600) and ``<root>/locks/``."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_state_dir()
        self.builds_dir = self.root / "builds"
        self.locks_dir = self.root / "locks"
        # Steps record ids from several threads (volumes are created concurrently): each
        # update is a read-modify-write that must not lose another thread's change.
        self._lock = threading.RLock()
        # State files `list` could not read (path: why), for the caller to say so in its own
        # output: a log line on stderr broke `status --json 2>&1`'s single JSON document.
        self.unreadable: dict[str, str] = {}

    def ensure(self) -> None:
        for directory in (self.root, self.builds_dir, self.locks_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path_for(self, build_id: str) -> Path:
        # The id becomes a file name: refuse anything that could escape the directory.
        if not naming.is_build_id(build_id):
            raise InvalidInput([f"{build_id!r} is not a build id like 20261126t031500-a1b2c3"])
        return self.builds_dir / f"{build_id}.json"

    def create(self, state: BuildState) -> BuildState:
        return self.save(state)

    def save(self, state: BuildState, *, at: datetime | None = None) -> BuildState:
        """Write ``state``, updated now (``at``: then instead)."""
        with self._lock:
            self.ensure()
            state = state.model_copy(update={"updated_at": at or _utcnow()})
            data = state.model_dump_json(indent=2).encode() + b"\n"
            write_atomic(self.path_for(state.build_id), data, mode=0o600)
            return state

    def load(self, build_id: str) -> BuildState:
        path = self.path_for(build_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput(
                [f"no state for build {build_id} in {self.builds_dir}"]
            ) from None
        try:
            return BuildState.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise InvalidInput(
                [f"state file {path} is not valid: {where}: {first['msg']}"]
            ) from None

    def exists(self, build_id: str) -> bool:
        return self.path_for(build_id).is_file()

    def update(self, build_id: str, *, at: datetime | None = None,
               **changes: Any) -> BuildState:
        """Load, change the given fields (validated), save (``at``: as of then); returns the
        saved state."""
        with self._lock:
            current = self.load(build_id)
            merged = current.model_dump()
            merged.update(changes)
            return self.save(BuildState.model_validate(merged), at=at)

    def record_resource(self, build_id: str, role: str, resource_id: str) -> BuildState:
        with self._lock:
            current = self.load(build_id)
            return self.update(build_id, resources={**current.resources, role: resource_id})

    def forget_resource(self, build_id: str, role: str) -> BuildState:
        with self._lock:
            current = self.load(build_id)
            resources = {k: v for k, v in current.resources.items() if k != role}
            return self.update(build_id, resources=resources)

    def release_resource(self, build_id: str, role: str) -> BuildState:
        """Forget ``role``'s id and note that it was deleted on purpose."""
        with self._lock:
            current = self.load(build_id)
            resources = {k: v for k, v in current.resources.items() if k != role}
            released = current.released if role in current.released else [
                *current.released, role]
            return self.update(build_id, resources=resources, released=released)

    def save_record(self, build_id: str, step: str, facts: Mapping[str, Any]) -> BuildState:
        """Merge ``facts`` into what ``step`` recorded so far."""
        with self._lock:
            current = self.load(build_id)
            record = {**current.records.get(step, {}), **facts}
            return self.update(build_id, records={**current.records, step: record})

    def step_started(self, build_id: str, step: str) -> BuildState:
        return self.update(build_id, step=step)

    def step_finished(self, build_id: str, step: str) -> BuildState:
        with self._lock:
            current = self.load(build_id)
            return self.update(build_id, step=step, steps_done=[*current.steps_done, step])

    def finish(
        self, build_id: str, status: BuildStatus, *, error: str | None = None,
        at: datetime | None = None,
    ) -> BuildState:
        """``at``: when the build ended, if not now (gc retiring a dead build: its last
        sign of life, or its duration would run until gc came)."""
        return self.update(build_id, status=status, error=error, at=at)

    def list(
        self,
        *,
        cloud: str | None = None,
        family: str | None = None,
        status: BuildStatus | None = None,
    ) -> list[BuildState]:
        """Every readable state, oldest build first; unreadable files are skipped and
        recorded in :attr:`unreadable`."""
        if not self.builds_dir.is_dir():
            return []
        out = []
        for path in sorted(self.builds_dir.glob("*.json")):
            if not naming.is_build_id(path.stem):
                continue
            try:
                state = BuildState.model_validate_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.unreadable[str(path)] = _why_unreadable(exc)
                log.debug("skipping unreadable state file %s", path, exc_info=True)
                continue
            if cloud is not None and state.cloud != cloud:
                continue
            if family is not None and state.family != family:
                continue
            if status is not None and state.status is not status:
                continue
            out.append(state)
        return out

    def remove(self, build_id: str) -> None:
        self.path_for(build_id).unlink(missing_ok=True)


def _why_unreadable(exc: OSError | ValueError) -> str:
    """One line on why a state file could not be read (the file's values stay out of it)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).splitlines()[0]
