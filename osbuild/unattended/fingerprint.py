"""The input fingerprint stored on each image, and the skip-when-unchanged decision."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuild import __version__, naming, resources
from osbuild.errors import SpecError
from osbuild.spec import BuildSpec, content_digest, format_duration

PROP_FINGERPRINT = "osbuild_fingerprint"
# Each input also goes on the image on its own, so a rebuild can say *what* changed.
PROP_INPUT_PREFIX = "osbuild_input_"
# When the image was built (ISO 8601, UTC); Glance's created_at is the fallback.
PROP_BUILD_TIME = "osbuild_build_time"
PROP_VERIFY = "osbuild_verify"
# A short digest of each of the spec's sections ("builder:1a2b3c,image:..."), so a rebuild
# names the sections that changed, not just "the spec". Not an input: beside the fingerprint.
PROP_SPEC_SECTIONS = PROP_INPUT_PREFIX + "spec_sections"
_SECTION_DIGEST = 6

FINGERPRINT_VERSION = 1
# With Windows Update on and no image.max_age, inputs never change although Microsoft
# ships patches monthly: an image older than this is rebuilt anyway.
DEFAULT_MAX_AGE_WITH_UPDATES = 7 * 86400.0

_LABELS = {
    "spec": "the spec",
    "osbuild_version": "the osbuild version",
    "templates": "osbuild's templates",
    "windows_iso": "the Windows ISO image",
    "virtio_iso": "the VirtIO ISO image",
    "cloudbase_msi": "the cloudbase-init MSI",
    "updates": "the update settings",
}


@dataclass(frozen=True)
class FingerprintInputs:
    """Everything that, changed, makes a different image."""

    spec: str  # sha256 of the spec text
    osbuild_version: str
    templates: str  # sha256 over the template files
    windows_iso: str  # "<algo>:<hash>" of the Glance image's data
    virtio_iso: str
    cloudbase_msi: str  # sha256 of the MSI
    updates: str  # "enabled:max_passes=N" or "disabled"
    # What changed in the spec, section by section (:func:`spec_sections`); not an input.
    spec_sections: str = field(default="", compare=False)

    def inputs(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in _LABELS}

    def digest(self) -> str:
        payload = json.dumps(
            {"v": FINGERPRINT_VERSION, **self.inputs()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def properties(self) -> dict[str, str]:
        """Image properties: the fingerprint plus one per input (Glance keeps 255 chars)."""
        props = {PROP_FINGERPRINT: self.digest()}
        for name, value in self.inputs().items():
            props[PROP_INPUT_PREFIX + name] = value[:255]
        if self.spec_sections:
            props[PROP_SPEC_SECTIONS] = self.spec_sections[:255]
        return props


def templates_digest(root: Path | None = None) -> str:
    """sha256 over every file under the templates directory: relative path and contents."""
    root = root if root is not None else resources.templates_dir()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in relative:
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def image_checksum(image: Any) -> str:
    """The Glance image's data hash: multihash (os_hash_algo/os_hash_value), else md5."""
    algo = _get(image, "hash_algo", "os_hash_algo")
    value = _get(image, "hash_value", "os_hash_value")
    if algo and value:
        return f"{algo}:{value}"
    checksum = _get(image, "checksum")
    if checksum:
        return f"md5:{checksum}"
    # An image without data has no hash; its id at least changes when it is replaced.
    return f"id:{_get(image, 'id')}"


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value:
            return value
    return None


def msi_sha256(spec: BuildSpec) -> str:
    if spec.cloudbase_init.is_url:
        assert spec.cloudbase_init.sha256 is not None  # the spec model requires it for a URL
        return spec.cloudbase_init.sha256
    path = spec.resolve_path(spec.cloudbase_init.msi)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise SpecError([f"cloudbase_init.msi: cannot read {path}: {exc.strerror}"]) from None
    return digest.hexdigest()


def inputs_for(
    spec: BuildSpec,
    *,
    windows_image: Any,
    virtio_image: Any,
    version: str = __version__,
    templates_root: Path | None = None,
) -> FingerprintInputs:
    return inputs_from_checksums(
        spec, windows_iso=image_checksum(windows_image), virtio_iso=image_checksum(virtio_image),
        version=version, templates_root=templates_root,
    )


# Spec keys that say where a build runs, whom it tells and how images are kept or refreshed:
# none of them changes what is installed, so changing one neither rebuilds (--if-changed)
# nor turns a refresh into a full build (wiring up a webhook cost a 2.5-hour reinstall).
_NOT_INPUTS: dict[str, Any] = {"notify": True, "clouds": True, "refresh": True,
                               "image": {"keep", "max_age", "superseded"}}


def spec_inputs_digest(spec: BuildSpec) -> str:
    """The digest of what the spec says about the image (defaults filled in, so spelling
    out a default is no change either)."""
    return content_digest(spec.model_dump(mode="json", exclude=_NOT_INPUTS))


def spec_sections(spec: BuildSpec) -> str:
    """``section:digest,...`` over the same dump: which sections a changed spec changed."""
    dumped = spec.model_dump(mode="json", exclude=_NOT_INPUTS)
    return ",".join(f"{key}:{content_digest(value)[:_SECTION_DIGEST]}"
                    for key, value in sorted(dumped.items()))


def _changed_sections(recorded: str, now: str) -> list[str]:
    def parse(text: str) -> dict[str, str]:
        return dict(part.split(":", 1) for part in text.split(",") if ":" in part)

    before, after = parse(recorded), parse(now)
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def inputs_from_checksums(
    spec: BuildSpec,
    *,
    windows_iso: str,
    virtio_iso: str,
    version: str = __version__,
    templates_root: Path | None = None,
) -> FingerprintInputs:
    """The inputs when the ISO images' checksums (:func:`image_checksum`) are known."""
    updates = (
        f"enabled:max_passes={spec.updates.max_passes}" if spec.updates.enabled else "disabled"
    )
    return FingerprintInputs(
        spec=spec_inputs_digest(spec),
        osbuild_version=version,
        templates=templates_digest(templates_root),
        windows_iso=windows_iso,
        virtio_iso=virtio_iso,
        cloudbase_msi=msi_sha256(spec),
        updates=updates,
        spec_sections=spec_sections(spec),
    )


def changed_inputs(props: dict[str, Any], inputs: FingerprintInputs) -> list[str]:
    """Which inputs differ from those recorded on an image (empty when it recorded none)."""
    out = []
    for name, value in inputs.inputs().items():
        recorded = props.get(PROP_INPUT_PREFIX + name)
        if recorded is not None and recorded != value[:255]:
            out.append(_LABELS[name])
    sections = props.get(PROP_SPEC_SECTIONS)
    if _LABELS["spec"] in out and sections and inputs.spec_sections:
        # An image from before this property says only "the spec".
        which = _changed_sections(str(sections), inputs.spec_sections)
        if which:
            out[out.index(_LABELS["spec"])] = f"the spec ({', '.join(which)})"
    return out


# A schedule's runs come a little early or late (systemd's RandomizedDelaySec, the minute cron
# starts in): an image is due this much before its age limit (a tenth of a short one), or a
# weekly run finds last week's image "6d23h59m old, under 7d" and skips a week.
SCHEDULE_SLACK = 2 * 3600.0


def due_at(limit: float) -> float:
    """The age from which an image with age limit ``limit`` is rebuilt."""
    return limit - min(SCHEDULE_SLACK, limit / 10)


def schedule_age(props: dict[str, Any], now: datetime) -> float | None:
    """How long ago the build that made the image started (its build id holds the start), as
    a schedule counts: the next run comes a period after the last run's start, not after the
    hour its image took to build. Else the image's age (:func:`image_age`)."""
    started = naming.build_started(str(props.get(naming.PROP_BUILD_ID) or ""))
    if started:
        when = datetime.strptime(started, "%Y%m%dt%H%M%S").replace(tzinfo=UTC)
        return (now - when).total_seconds()
    return image_age(props, now)


def image_age(props: dict[str, Any], now: datetime) -> float | None:
    for key in (PROP_BUILD_TIME, "created_at"):
        value = props.get(key)
        if isinstance(value, datetime):
            when = value
        elif isinstance(value, str) and value:
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        else:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return (now - when).total_seconds()
    return None


def should_skip(
    current_image_props: dict[str, Any] | None,
    fingerprint: str | FingerprintInputs,
    max_age: float | None,
    updates_enabled: bool,
    now: datetime | None = None,
) -> tuple[bool, str]:
    """Whether ``--if-changed`` may skip this build, and why (for the user, either way).

    Skip only when the family's current image exists, passed verification, carries the
    same fingerprint and is younger than ``max_age``. With updates enabled the age limit
    defaults to :data:`DEFAULT_MAX_AGE_WITH_UPDATES`, so patches are picked up.
    """
    now = now or datetime.now(UTC)
    if not current_image_props:
        return False, "no current image of this family"
    inputs = fingerprint if isinstance(fingerprint, FingerprintInputs) else None
    wanted = inputs.digest() if inputs else str(fingerprint)
    recorded = current_image_props.get(PROP_FINGERPRINT)
    name = naming.image_label(current_image_props)
    if current_image_props.get(PROP_VERIFY) == "failed":
        return False, f"{name} failed verification"
    status = current_image_props.get("status")
    if status and status != "active":
        # An admin deactivated it (a bad image pulled): nothing boots from it any more.
        return False, f"{name} is {status}, not active"
    if not recorded:
        return False, f"{name} has no input fingerprint"
    if recorded != wanted:
        what = changed_inputs(current_image_props, inputs) if inputs else []
        detail = ", ".join(what) if what else "fingerprint differs"
        return False, f"inputs changed since {name}: {detail}"
    limit = max_age
    if limit is None and updates_enabled:
        limit = DEFAULT_MAX_AGE_WITH_UPDATES
    age = schedule_age(current_image_props, now)
    if limit is not None:
        if age is None:
            return False, f"{name} has no build time, cannot tell its age"
        if age >= due_at(limit):
            why = "image.max_age" if max_age is not None else "the default for updates enabled"
            slack = limit - due_at(limit)
            early = (f" less {format_duration(slack)} for a schedule's jitter"
                     if slack >= 1 else "")
            return False, (
                f"{name} is {format_duration(age)} old, older than "
                f"{format_duration(due_at(limit))} ({why}: {format_duration(limit)}{early})"
            )
        slack = limit - due_at(limit)
        early = f": {format_duration(limit)} less {format_duration(slack)}" if slack >= 1 else ""
        return True, (
            f"{name} has the same inputs and is {format_duration(max(age, 0))} old "
            f"(under {format_duration(due_at(limit))}{early})"
        )
    return True, f"{name} has the same inputs"


def current_image_properties(conn: Any, family: str) -> dict[str, Any] | None:
    """The family's current image as `should_skip` reads it: properties, name, created_at."""
    from osbuild.cloud import images as image_api
    from osbuild.images.family import current_of, list_family

    current = current_of(list_family(conn, family, with_usage=False))
    if current is None:
        return None
    image = image_api.get_image(conn, current.id)
    props = {str(k): v for k, v in image.properties.items()}
    props.update({"id": image.id, "name": image.name, "created_at": image.created_at,
                  "min_disk": image.min_disk, "status": image.status})
    # A verdict osbuild keeps on the image; the listing's reading wins if the SDK hid it.
    props.setdefault(PROP_VERIFY, current.verify)
    return props


def inputs_now(conn: Any, spec: BuildSpec) -> tuple[FingerprintInputs | None, str]:
    """The inputs a build of ``spec`` would have now, or None and which ISO is missing."""
    from osbuild.cloud import images as image_api

    found = []
    for field_name, name_or_id in (("windows.iso_image", spec.windows.iso_image),
                                   ("virtio.iso_image", spec.virtio.iso_image)):
        image = image_api.find_image(conn, name_or_id)
        if image is None:
            return None, f"{field_name}: no image {name_or_id!r} in Glance"
        found.append(image)
    return inputs_for(spec, windows_image=found[0], virtio_image=found[1]), ""


def unchanged_since_current(conn: Any, spec: BuildSpec, *,
                            now: datetime | None = None) -> tuple[bool, str]:
    """`--if-changed`: whether the family's current image already is this build's output."""
    props = current_image_properties(conn, spec.name)
    if props is None:
        return False, "no current image of this family"
    inputs, missing = inputs_now(conn, spec)
    if inputs is None:
        return False, missing
    return should_skip(props, inputs, spec.image.max_age, spec.updates.enabled, now)
