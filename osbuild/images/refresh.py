"""Whether a build patches the family's current image (a refresh) or installs from the ISO.

`--refresh auto` (the cron setting) refreshes only when the current image was built from the
same inputs (the fingerprint), is younger than ``refresh.max_age`` and is fewer than
``refresh.max_generations`` refreshes away from a full build; `always` refreshes whenever
there is a current image, `never` always installs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from osbuild import naming
from osbuild.errors import InvalidInput
from osbuild.images.family import VERIFY_PASSED, VERIFY_SKIPPED
from osbuild.media import windows
from osbuild.spec import BuildSpec, format_duration
from osbuild.unattended.fingerprint import (
    PROP_FINGERPRINT,
    PROP_INPUT_PREFIX,
    changed_inputs,
    current_image_properties,
    inputs_now,
    schedule_age,
    should_skip,
)


class RefreshMode(StrEnum):
    NEVER = "never"
    AUTO = "auto"
    ALWAYS = "always"


@dataclass(frozen=True)
class Parent:
    """The current image a refresh boots from, and what its child inherits."""

    image_id: str
    name: str
    generation: int  # refreshes in a row behind the parent (0: it is a full build)
    min_disk: int
    # The parent's fingerprint and input properties: a refresh reinstalls none of its inputs,
    # so its image is still the product of those (and `auto` compares against them).
    inputs: dict[str, str]
    # The ISOs and install image the parent's Windows came from (naming.INSTALL_PROVENANCE).
    provenance: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "name": self.name, "generation": self.generation,
                "min_disk": self.min_disk, "inputs": dict(self.inputs),
                "provenance": dict(self.provenance)}

    @classmethod
    def from_record(cls, record: Any) -> Parent:
        return cls(str(record["image_id"]), str(record.get("name") or ""),
                   int(record.get("generation") or 0), int(record.get("min_disk") or 0),
                   {str(k): str(v) for k, v in (record.get("inputs") or {}).items()},
                   {str(k): str(v) for k, v in (record.get("provenance") or {}).items()})


@dataclass(frozen=True)
class Choice:
    parent: Parent | None  # None: a full build
    reason: str

    @property
    def kind(self) -> str:
        return "refresh" if self.parent else "full"


def generation_made(parent: Parent | None) -> int:
    """The generation of the image a build makes: 0 for a full build, one more than its
    parent's for a refresh (refreshes in a row since the last full build)."""
    return 0 if parent is None else parent.generation + 1


def parent_from(props: dict[str, Any]) -> Parent:
    inputs = {k: str(v) for k, v in props.items()
              if k == PROP_FINGERPRINT or k.startswith(PROP_INPUT_PREFIX)}
    return Parent(image_id=str(props["id"]), name=str(props.get("name") or props["id"]),
                  generation=naming.generation_of(props) or 0,
                  min_disk=int(props.get("min_disk") or 0),
                  inputs=inputs, provenance=install_provenance(props))


def install_provenance(props: dict[str, Any]) -> dict[str, str]:
    """The ISOs and install image an image's Windows came from, as its properties say."""
    return {k: str(props[k]) for k in naming.INSTALL_PROVENANCE if props.get(k)}


def choose(conn: Any, spec: BuildSpec, mode: RefreshMode, *,
           now: datetime | None = None) -> Choice:
    """Refresh or full build, and why; `always` without a usable image is invalid input."""
    if mode is RefreshMode.NEVER:
        return Choice(None, "--refresh never")
    props = current_image_properties(conn, spec.name)
    why_not = _unusable(spec, props)
    if mode is RefreshMode.ALWAYS:
        if why_not:
            raise InvalidInput([f"--refresh always: {why_not}"])
        assert props is not None
        return Choice(parent_from(props), "--refresh always" + _not_applied(conn, spec, props))
    if why_not:
        return Choice(None, why_not)
    assert props is not None
    name = naming.image_label(props)
    inputs, missing = inputs_now(conn, spec)
    if inputs is None:
        return Choice(None, missing)
    same, why = should_skip(props, inputs, None, False, now)
    if not same:
        return Choice(None, why)
    age = schedule_age(props, now or datetime.now(UTC))  # as --if-changed counts it
    limit = spec.refresh.max_age
    if age is None or age > limit:
        shown = "unknown" if age is None else format_duration(age)
        return Choice(None, f"{name} is {shown} old, older than refresh.max_age "
                            f"({format_duration(limit)})")
    generation = naming.generation_of(props) or 0
    if generation >= spec.refresh.max_generations:
        return Choice(None, f"{name} is refresh {generation} in a row "
                            f"(refresh.max_generations: {spec.refresh.max_generations})")
    made = ("was made by a full build" if generation == 0
            else f"is refresh {generation} of {spec.refresh.max_generations} in a row")
    return Choice(parent_from(props), f"{name} has the same inputs, is "
                                      f"{format_duration(max(age, 0))} old and {made}")


def _not_applied(conn: Any, spec: BuildSpec, props: dict[str, Any]) -> str:
    """What a forced refresh leaves out: the inputs changed since the parent, which only a
    full build installs (the refresh keeps the parent's fingerprint). "" when none did, or
    when the ISOs cannot be read (a refresh needs neither)."""
    inputs, _missing = inputs_now(conn, spec)
    if inputs is None:
        return ""
    changed = changed_inputs(props, inputs)
    if not changed:
        return ""
    return (f" (inputs changed since {naming.image_label(props)}: {', '.join(changed)}; a "
            "refresh applies none of them, a full build does)")


def _unusable(spec: BuildSpec, props: dict[str, Any] | None) -> str | None:
    if props is None:
        return f"family {spec.name} has no current image (build it in full first)"
    name = naming.image_label(props)
    if props.get(naming.PROP_VERIFY) not in (VERIFY_PASSED, VERIFY_SKIPPED):
        return f"{name} did not pass verification"
    status = props.get("status")
    if status and status != "active":
        # An admin deactivated it (a bad image pulled): the refresh cannot boot from it, and
        # a cron run refused every time would never replace it.
        return f"{name} is {status}, not active: a refresh boots from it"
    generation = naming.generation_of(props) or 0
    if generation + 2 > windows.SYSPREP_GENERALIZE_LIMIT:
        # Its full build generalized once and each refresh once more: sysprep refuses the
        # next (`--refresh always` passes refresh.max_generations by, not this).
        return (f"{name} is refresh {generation} in a row: its Windows has been generalized "
                f"{generation + 1} times, and sysprep stops at "
                f"{windows.SYSPREP_GENERALIZE_LIMIT} (build it in full)")
    if not spec.updates.enabled:
        return "updates.enabled is false: a refresh would install nothing"
    plugins = spec.cloudbase_init.plugins
    if plugins is not None and not any(p.endswith(".UserDataPlugin") for p in plugins):
        return ("cloudbase_init.plugins has no UserDataPlugin: the image's cloudbase-init "
                "would never start the refresh")
    return None
