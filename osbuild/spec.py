"""The build spec: one YAML file per image family, loaded into an immutable, typed object.

Every problem in a spec is reported at once, each naming its field path and, where the YAML
gives it, the line: ``ws2022.yaml:7: windows.edition: ...``. Unknown keys are errors.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from osbuild.durations import format_duration, parse_duration
from osbuild.errors import SpecError
from osbuild.media import intl, stages, windows

# --------------------------------------------------------------------------- durations

# What parse_duration accepts, for `osbuild schema`: text with units, or positive seconds.
DURATION_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string",
         "pattern": r"^\s*(?=\S)(\d+d)?\s*(\d+h)?\s*(\d+m)?\s*(\d+s)?\s*$"},
        {"type": "number", "exclusiveMinimum": 0},
    ],
    "description": "A duration: 90m, 4h, 1h30m, 45s, 2d, or a number of seconds",
}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(DURATION_JSON_SCHEMA),
]

# --------------------------------------------------------------------------- the model

_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_PRODUCT_KEY_RE = re.compile(r"^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PYTHON_PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# Characters Windows refuses in user and group names.
_ACCOUNT_FORBIDDEN = set('"/\\[]:;|=,+*?<>@')


def _no_control_chars(value: str) -> str:
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must be one line of printable text")
    return value


Text = Annotated[str, AfterValidator(_no_control_chars)]


def _template_problem(message: str) -> str:
    """str.format's parse errors, in the words of a spec author."""
    if "Single '}'" in message:
        return "'}' without '{' (write }} for a literal brace)"
    if "expected '}'" in message or "Single '{'" in message:
        return "'{' without '}' (write {{ for a literal brace)"
    return message


def _check_account_name(name: str, *, limit: int) -> None:
    bad = set(name) & _ACCOUNT_FORBIDDEN
    if bad or not name.strip(". ") or len(name) > limit:
        raise ValueError(
            f"{name!r} is not a Windows account name (at most {limit} characters, "
            f"none of {''.join(sorted(_ACCOUNT_FORBIDDEN))})"
        )


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class WindowsSpec(_Section):
    version: Annotated[
        str,
        # YAML reads an unquoted 2022 as a number; validate takes both, so the schema does.
        WithJsonSchema({"enum": [*windows.VERSIONS, *(int(v) for v in windows.VERSIONS)],
                        "description": "Windows release (text or number)"}),
    ]
    edition: Text
    iso_image: Text = Field(description="Glance image name or ID of the Windows install ISO")
    product_key: SecretStr | None = Field(
        default=None,
        description="An explicit key, `kms` for the public GVLK, or omitted for evaluation media",
    )
    locale: Text = "en-US"
    input_locale: Text | None = None
    timezone: Text = "UTC"
    firmware: Literal["bios", "uefi"] = "bios"
    secure_boot: bool = False
    tpm: bool = Field(
        default=False,
        description="Attach a vTPM (Windows 11); without it, Setup's TPM/Secure Boot checks "
        "are bypassed",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in windows.RELEASE:
            *first, last = (repr(v) for v in windows.VERSIONS)
            raise ValueError(f"must be {', '.join(first)} or {last}")
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        canonical = intl.windows_locale(value)
        if canonical is None:
            raise ValueError(intl.locale_hint(value))
        return canonical

    @field_validator("input_locale")
    @classmethod
    def _input_locale(cls, value: str | None) -> str | None:
        if value is None:
            return None
        entries = [entry.strip() for entry in value.split(";") if entry.strip()]
        bad = [entry for entry in entries if not intl.is_input_profile(entry)]
        if bad or not entries:
            raise ValueError(
                f"{value!r}: not Windows input profiles (a locale like de-DE, or a language and "
                "keyboard pair like 0407:00000407; several separated by ';')")
        return ";".join(intl.windows_locale(e) or e for e in entries)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        canonical = intl.windows_time_zone(value)
        if canonical is None:
            raise ValueError(intl.time_zone_hint(value))
        return canonical

    @field_validator("product_key")
    @classmethod
    def _product_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if key.lower() == "kms":
            return SecretStr("kms")
        if not _PRODUCT_KEY_RE.match(key.upper()):
            # The key itself is a secret: never echo it back. Nor show the form as a key:
            # redaction takes out anything shaped like one, the example included.
            raise ValueError("must be `kms` or a product key: 5 groups of 5 letters or "
                             "digits joined by '-'")
        return SecretStr(key.upper())

    @field_validator("edition")
    @classmethod
    def _edition(cls, value: str, info: ValidationInfo) -> str:
        version = info.data.get("version")
        if version is None:  # the version's own error is reported instead
            return value
        canonical = windows.canonical_edition(version, value)
        if canonical is None:
            choices = (
                windows.SERVER_EDITIONS if windows.is_server(version) else windows.CLIENT_EDITIONS
            )
            raise ValueError(
                f"{value!r} is not an edition of Windows {version} (one of: {', '.join(choices)})"
            )
        return canonical

    @model_validator(mode="after")
    def _firmware_and_key(self) -> WindowsSpec:
        if self.secure_boot and self.firmware != "uefi":
            raise ValueError("secure_boot: needs firmware uefi")
        if self.tpm and self.firmware != "uefi":
            raise ValueError("tpm: needs firmware uefi")
        if (
            self.product_key is not None
            and self.product_key.get_secret_value() == "kms"
            and self.edition_info.gvlk is None
        ):
            raise ValueError(
                f"product_key: there is no public KMS key for Windows {self.version} "
                f"{self.edition}; give the key explicitly or omit it for evaluation media"
            )
        return self

    @property
    def edition_info(self) -> windows.Edition:
        return windows.Edition(self.version, self.edition)

    @property
    def image_name(self) -> str:
        return self.edition_info.image_name

    def resolved_product_key(self) -> str | None:
        """The key the answer file carries (GVLK for `kms`), or None for evaluation media."""
        if self.product_key is None:
            return None
        key = self.product_key.get_secret_value()
        return self.edition_info.gvlk if key == "kms" else key


class VirtioSpec(_Section):
    iso_image: Text = Field(description="Glance image name or ID of the virtio-win ISO")
    winpe_drivers: tuple[str, ...] = ("viostor", "vioscsi", "NetKVM")
    guest_tools: bool = True
    qemu_ga: bool = True

    @field_validator("winpe_drivers")
    @classmethod
    def _drivers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [d for d in value if d not in windows.VIRTIO_DRIVERS]
        if unknown:
            raise ValueError(
                f"unknown driver(s) {', '.join(unknown)} "
                f"(one of: {', '.join(windows.VIRTIO_DRIVERS)})"
            )
        if len(set(value)) != len(value):
            raise ValueError("lists a driver twice")
        return value

    @model_validator(mode="after")
    def _agent_needs_its_channel(self) -> VirtioSpec:
        # qemu-ga talks to the host over virtio-serial: without the vioserial driver the
        # service runs and nothing ever answers. The guest tools install it; so does WinPE,
        # which adds its drivers to the installed system's driver store.
        if self.qemu_ga and not self.guest_tools and "vioserial" not in self.winpe_drivers:
            raise ValueError(
                "qemu_ga: the QEMU guest agent needs the vioserial driver; set "
                "virtio.guest_tools: true (installs it) or add vioserial to "
                "virtio.winpe_drivers")
        return self


class CloudbaseInitSpec(_Section):
    msi: Text = Field(
        description="Local path (relative to the spec file) of the MSI shipped on the config "
        "ISO, or an https URL the guest downloads"
    )
    sha256: str | None = Field(
        default=None, description="Required for an https URL; checked by the guest"
    )
    metadata_services: tuple[str, ...] = (
        "cloudbaseinit.metadata.services.configdrive.ConfigDriveService",
        "cloudbaseinit.metadata.services.httpservice.HttpService",
    )
    plugins: tuple[str, ...] | None = None
    username: Text = "Admin"
    groups: tuple[Text, ...] = ("Administrators",)
    first_logon_behaviour: Annotated[
        Literal["no", "clear_text_injected_only", "always"],
        # YAML 1.1 reads an unquoted `no` as false; validate takes both, so the schema does.
        WithJsonSchema({"enum": ["no", "clear_text_injected_only", "always", False]}),
    ] = "no"
    inject_metadata_password: bool = True
    config: dict[str, str | int | bool] = Field(
        default_factory=dict, description="Extra [DEFAULT] options for cloudbase-init.conf"
    )

    @property
    def is_url(self) -> bool:
        return self.msi.startswith(("https://", "http://"))

    @field_validator("first_logon_behaviour", mode="before")
    @classmethod
    def _unquoted_no(cls, value: Any) -> Any:
        return "no" if value is False else value

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not _SHA256_RE.match(value):
            raise ValueError("must be 64 hex digits")
        return value

    @field_validator("metadata_services", "plugins")
    @classmethod
    def _class_paths(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for item in value or ():
            if not _PYTHON_PATH_RE.match(item):
                raise ValueError(f"{item!r} is not a Python class path like a.b.Class")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        _check_account_name(value, limit=20)
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            _check_account_name(name, limit=256)
        return value

    @field_validator("config")
    @classmethod
    def _config_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if not re.match(r"^[a-z][a-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a cloudbase-init option name")
            if isinstance(item, str):
                _no_control_chars(item)
        return value

    @model_validator(mode="after")
    def _url_needs_checksum(self) -> CloudbaseInitSpec:
        if self.msi.startswith("http://"):
            raise ValueError("msi: a download URL must use https")
        if self.is_url and self.sha256 is None:
            raise ValueError("sha256: required when msi is a URL (the guest checks it)")
        return self


class UpdatesSpec(_Section):
    enabled: bool = False
    max_passes: int = Field(default=5, ge=1, le=20)


class HygieneSpec(_Section):
    """What the guest removes before capture so the image is small; each step on by default."""

    component_cleanup: bool = Field(
        default=True, description="DISM /StartComponentCleanup: superseded components go")
    reset_base: bool = Field(
        default=False, description="With component_cleanup, /ResetBase: smaller, but the "
        "installed updates can no longer be uninstalled")
    wu_cache: bool = Field(
        default=True, description="Purge Windows Update's download cache "
        "(SoftwareDistribution\\Download)")
    pagefile: bool = Field(
        default=True, description="No pagefile.sys in the captured image (one reboot before "
        "sysprep; Windows makes a new one on each instance)")
    hiberfile: bool = Field(
        default=True, description="Hibernation off: no hiberfil.sys in the image")
    zero_free_space: bool = Field(
        default=True, description="Overwrite free space with zeros (and trim where the disk "
        "supports discard) so qcow2 conversion skips it")

    @model_validator(mode="after")
    def _reset_base_needs_cleanup(self) -> HygieneSpec:
        if self.reset_base and not self.component_cleanup:
            raise ValueError("reset_base: needs component_cleanup: true")
        return self


class RefreshSpec(_Section):
    """When `osbuild build --refresh auto` patches the current image instead of reinstalling."""

    max_age: Duration = Field(
        default=45 * 86400.0,
        description="A current image older than this gets a full build (default 45d)")
    max_generations: int = Field(
        default=3, ge=1, le=windows.SYSPREP_GENERALIZE_LIMIT - 1,
        description="Refreshes in a row before a full build (each one runs sysprep again "
        "and the image carries whatever accumulated since its install)")


class _CloudTimeouts(_Section):
    """The cloud-side deadlines; the guest stages' fields come from the stage table."""

    volumes: Duration = 1800.0
    boot: Duration = 1200.0
    capture: Duration = 3600.0
    verify: Duration = 1800.0

    def of(self, stage: str) -> float:
        """A stage's deadline. A stage this model predates (added to the table at run time)
        gets the table's default; a name that is no stage, the first-logon driver's."""
        value = getattr(self, stage, None)
        if value is None:
            declared = stages.by_name(stage)
            return declared.default_timeout if declared else self.of("firstlogon")
        return float(value)


if TYPE_CHECKING:
    StageTimeouts = _CloudTimeouts
else:
    # One field per guest stage of osbuild.media.stages, with its declared default.
    StageTimeouts = create_model(
        "StageTimeouts",
        __base__=_CloudTimeouts,
        __module__=__name__,
        **{stage.name: (Duration, stage.default_timeout) for stage in stages.GUEST_STAGES},
    )


class BuilderSpec(_Section):
    flavor: Text
    network: Text | None = Field(default=None, description="Network name or ID (none: no NIC)")
    disk_gb: int = Field(default=40, ge=20, le=2048)
    target: Literal["volume", "local"] = "volume"
    volume_type: Text | None = None
    availability_zone: Text | None = None
    disk_bus: Literal["virtio", "scsi", "sata"] = "virtio"
    timeout: Duration = 6 * 3600.0
    stage_timeouts: StageTimeouts = Field(default_factory=StageTimeouts)


# Glance refuses longer image names (its `name` column).
GLANCE_NAME_MAX = 255


def _property_key(key: str) -> str:
    """An image property's name; each bad one is its own problem (its own line)."""
    if key.startswith("osbuild_"):
        raise ValueError("the osbuild_ prefix is osbuild's own")
    # Glance refuses to set its own fields as properties; it would say so only at publish.
    from osbuild.cloud.image_fields import is_glance_field

    if is_glance_field(key):
        raise ValueError("Glance's own field, not a property (name, visibility, tags, "
                         "min_disk, min_ram are image.* keys)")
    return key


PropertyKey = Annotated[str, AfterValidator(_property_key)]


class ImageSpec(_Section):
    name: Text = Field(
        description="Name template: {name}, {date}, {datetime}, {build_id}, {version}, {edition}"
    )
    visibility: Literal["private", "shared", "community", "public"] = "private"
    properties: dict[PropertyKey, Text] = Field(default_factory=dict)
    tags: tuple[Text, ...] = ()
    disk_format: Literal["qcow2", "raw"] = "qcow2"
    min_disk: int | None = Field(default=None, ge=1)
    min_ram: int = Field(default=2048, ge=0)
    keep: int = Field(default=3, ge=1)
    max_age: Duration | None = None
    superseded: Literal["hide", "delete"] = "hide"
    members: tuple[Text, ...] = Field(
        default=(), description="Project IDs the image is shared with (visibility: shared)"
    )

    @field_validator("name")
    @classmethod
    def _name_template(cls, value: str) -> str:
        # str.format's own parser: what passes here is what promote formats.
        allowed = {"name", "date", "datetime", "build_id", "version", "edition"}
        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(_template_problem(str(exc))) from None
        for _literal, field, spec, conversion in parts:
            if field is None:
                continue
            if field == "":
                raise ValueError("empty placeholder {} (one of: "
                                 + ", ".join(f"{{{a}}}" for a in sorted(allowed)) + ")")
            if field not in allowed or spec or conversion:
                shown = field + (f"!{conversion}" if conversion else "") + (
                    f":{spec}" if spec else "")
                raise ValueError(
                    f"unknown placeholder {{{shown}}} (one of: "
                    + ", ".join(f"{{{a}}}" for a in sorted(allowed))
                    + ")"
                )
        return value

    @model_validator(mode="after")
    def _members_need_shared(self) -> ImageSpec:
        if self.members and self.visibility != "shared":
            raise ValueError("members: only a shared image has members (visibility: shared)")
        return self


class VerifySpec(_Section):
    """The boot test of a new image before it is promoted."""

    enabled: bool = True
    flavor: Text | None = Field(default=None, description="Default: builder.flavor")
    network: Text | None = Field(default=None, description="Default: builder.network")
    boot_from_volume: bool = False
    timeout: Duration | None = Field(
        default=None, description="Default: builder.stage_timeouts.verify"
    )
    console_must_match: tuple[str, ...] = Field(
        default=(), description="Regexes the test server's console must show"
    )
    console_must_not_match: tuple[str, ...] = Field(
        default=(), description="Regexes the test server's console must never show"
    )
    on_failure: Literal["hide", "delete"] = Field(
        default="hide",
        description="hide: keep the image hidden with osbuild_verify=failed; delete: delete it",
    )

    @field_validator("console_must_match", "console_must_not_match")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class NotifySpec(_Section):
    """A webhook that receives a JSON summary when a build ends."""

    url: Text = Field(description="http(s) URL the summary is POSTed to")
    on: tuple[Literal["failure", "success"], ...] = Field(
        default=("failure",), description="which outcomes are posted"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL")
        return value


class BuildSpec(_Section):
    """One image family."""

    name: Annotated[str, Field(pattern=_NAME_RE, description="Image family name")]
    windows: WindowsSpec
    virtio: VirtioSpec
    cloudbase_init: CloudbaseInitSpec
    updates: UpdatesSpec = Field(default_factory=UpdatesSpec)
    hygiene: HygieneSpec = Field(default_factory=HygieneSpec)
    refresh: RefreshSpec = Field(default_factory=RefreshSpec)
    scripts: tuple[Text, ...] = Field(
        default=(), description="PowerShell files (relative to the spec) run before cleanup"
    )
    builder: BuilderSpec
    image: ImageSpec
    verify: VerifySpec = Field(default_factory=VerifySpec)
    notify: NotifySpec | None = None
    clouds: tuple[Text, ...] = Field(
        default=(), description="clouds.yaml entries to build in (default: the CLI's cloud)"
    )

    # Where the spec came from; set by load_spec, not part of the YAML.
    source_path: Path | None = Field(default=None, exclude=True)
    digest: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> BuildSpec:
        if (windows.RELEASE[self.windows.version].hardware_checks
                and self.windows.firmware != "uefi"):
            raise ValueError(f"windows.firmware: Windows {self.windows.version} needs uefi")
        # Without the storage driver in WinPE, Setup sees no disk (and the image would not
        # boot: INACCESSIBLE_BOOT_DEVICE).
        storage = windows.STORAGE_DRIVER_FOR_BUS[self.builder.disk_bus]
        if storage is not None and storage not in self.virtio.winpe_drivers:
            raise ValueError(
                f"virtio.winpe_drivers: builder.disk_bus {self.builder.disk_bus} needs {storage}"
            )
        folder = windows.virtio_os_folder(self.windows.version)
        missing = [
            d for d in self.virtio.winpe_drivers if folder not in windows.VIRTIO_DRIVER_FOLDERS[d]
        ]
        if missing:
            raise ValueError(
                f"virtio.winpe_drivers: virtio-win has no {folder} build of {', '.join(missing)}"
            )
        if (self.builder.target == "volume" and self.image.min_disk is not None
                and self.image.min_disk < self.builder.disk_gb):
            # The capture keeps the disk's size, and neither Cinder (a volume from the image)
            # nor Nova (a flavor's root disk) takes less than an image's virtual size.
            raise ValueError(f"image.min_disk: {self.image.min_disk} is less than "
                             f"builder.disk_gb ({self.builder.disk_gb}), the image's size: "
                             "nothing could boot it in so little")
        if self.builder.target == "local" and self.image.disk_format != "qcow2":
            # The image is Nova's snapshot of the builder: createImage takes no format, and
            # the libvirt driver uploads in [libvirt] snapshot_image_format or the disk's own
            # (nova/virt/libvirt/driver.py snapshot()), qcow2 on a default compute. qcow2 stays
            # allowed: it is that default, and what a refresh (a volume upload) asks for.
            raise ValueError(f"image.disk_format: {self.image.disk_format} cannot apply to a "
                             "local target, whose image is Nova's snapshot of the builder in "
                             "the format the cloud's Nova sets (qcow2 by default); remove the "
                             "key, or use builder.target: volume")
        longest = self.image_name_for("2" * len("20261126t031500-a1b2c3"))
        if len(longest) > GLANCE_NAME_MAX:
            raise ValueError(f"image.name: the name it makes is longer than {GLANCE_NAME_MAX} "
                             f"characters ({len(longest)}), Glance's limit")
        return self

    def secret_values(self) -> list[str]:
        """Every value the spec marks secret (``SecretStr``), and the key the answer file
        carries for ``product_key: kms``: what no output of the build may show."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item)
            elif isinstance(value, Mapping):
                for item in value.values():
                    walk(item)

        walk(self)
        return [*found, self.windows.resolved_product_key() or ""]

    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve_path(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir() / path

    def image_name_for(self, build_id: str, when: datetime | None = None) -> str:
        when = when or datetime.now(UTC)
        return self.image.name.format(
            name=self.name,
            date=when.strftime("%Y%m%d"),
            datetime=when.strftime("%Y%m%d%H%M%S"),
            build_id=build_id,
            version=self.windows.version,
            edition=self.windows.edition.lower().replace(" ", "-"),
        )

    @property
    def min_disk_gb(self) -> int:
        return self.image.min_disk or self.builder.disk_gb

    @property
    def verify_timeout(self) -> float:
        return self.verify.timeout or self.builder.stage_timeouts.verify

    @property
    def verify_timeout_setting(self) -> str:
        """The key that sets :attr:`verify_timeout`, for the message when it passes."""
        return "verify.timeout" if self.verify.timeout else "builder.stage_timeouts.verify"


# --------------------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key and sequence item."""


def _load_with_lines(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    node = yaml.compose(text, Loader=_LineLoader)
    lines: dict[tuple[Any, ...], int] = {}

    def walk(n: yaml.Node | None, path: tuple[Any, ...]) -> Any:
        if n is None:
            return None
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                # Keys as written: YAML 1.1 would read `on:` (notify.on) as true, `2022:` as
                # a number; a spec's keys are names.
                key = (key_node.value if isinstance(key_node, yaml.ScalarNode)
                       else _LineLoader(text).construct_object(key_node))
                if key in out:
                    raise SpecError(
                        [f"line {key_node.start_mark.line + 1}: {_dotted((*path, key))}: "
                         "key given twice"]
                    )
                lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(n.value)]
        return _LineLoader(text).construct_object(n)

    return walk(node, ()), lines


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the spec accepts in the mapping at ``loc`` (the parent of a bad key)."""
    model: Any = BuildSpec
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        candidates = [field.annotation, *get_args(field.annotation)]
        model = next((c for c in candidates
                      if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return [name for name in model.model_fields if name not in ("source_path", "digest")]


def _nearest_key(loc: tuple[Any, ...]) -> str | None:
    """The known key an unknown key at ``loc`` was probably meant to be."""
    nearest = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1)
    return nearest[0] if nearest else None


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    msg = error["msg"]
    if kind == "extra_forbidden":
        nearest = _nearest_key(tuple(error["loc"]))
        return f"unknown key (did you mean {nearest}?)" if nearest else "unknown key"
    if kind == "missing":
        return "required"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "string_pattern_mismatch" and error["loc"] == ("name",):
        return "must be lowercase letters, digits, '.', '_' or '-' (at most 63)"
    if kind == "string_type":
        return "must be text (quote it in YAML)"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    if kind in ("tuple_type", "list_type"):
        return "must be a list (- item per line, or [a, b])"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        # pydantic's text names its classes ("instance of WindowsSpec").
        return "must be a mapping (key: value lines beneath it)"
    return msg.replace("Input should be", "must be")


def _problems(exc: ValidationError, lines: dict[tuple[Any, ...], int]) -> list[tuple[int, str]]:
    """(line, message) for every validation error; line 0 when the YAML gives none."""
    found: list[tuple[int, str]] = []
    errors = exc.errors()
    # `flavour:` for `flavor:` is one problem, not two: its line names the key it meant,
    # so that key's own "required" is left out.
    meant = {(*error["loc"][:-1], nearest) for error in errors
             if error["type"] == "extra_forbidden"
             and (nearest := _nearest_key(tuple(error["loc"]))) is not None}
    for error in errors:
        # pydantic places a mapping key's own error under the key, then "[key]".
        loc = tuple(part for part in error["loc"] if part != "[key]")
        if error["type"] == "missing" and loc in meant:
            continue
        message = _describe(error)
        # A model-level check names its own field in the message ("windows.firmware: ...");
        # report it under that field, and at that field's line when the YAML has it.
        if re.match(r"^[a-z_][a-z0-9_.]*:", message):
            inner, message = message.split(":", 1)
            message = message.strip()
            inner_path = tuple(inner.split("."))
            loc = inner_path if not loc or inner_path[0] == loc[0] else loc + inner_path
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        where = f"line {line}: " if line else ""
        found.append((line or 0, f"{where}{_dotted(loc)}: {message}"))
    return found


def _in_file_order(found: list[tuple[int, str]]) -> list[str]:
    # As an editor would walk through them.
    return [text for _, text in sorted(found, key=lambda item: item[0])]


def content_digest(data: Any) -> str:
    """The spec's digest, from what it says rather than how it is written: comments, key
    order, quoting and layout do not change it (resume and --if-changed compare it)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_spec(text: str, *, source: str = "<spec>", path: Path | None = None) -> BuildSpec:
    """Validate spec text; raises :class:`SpecError` listing every problem."""
    try:
        data, lines = _load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}not valid YAML: {problem}"], source=source) from None
    except SpecError as exc:
        raise SpecError(exc.problems, source=source) from None
    if not isinstance(data, dict):
        raise SpecError(["the spec must be a YAML mapping"], source=source)
    digest = content_digest(data)
    internal = [key for key in ("source_path", "digest") if key in data]
    if internal:
        raise SpecError(
            [f"line {lines[(key,)]}: {key}: unknown key" for key in internal], source=source
        )
    base_dir = path.parent if path else Path.cwd()
    try:
        spec = BuildSpec.model_validate({**data, "source_path": path, "digest": digest})
    except ValidationError as exc:
        # Missing files are reported together with the other problems, not in a second round.
        found = _problems(exc, lines) + _file_problems(data, base_dir, lines)
        raise SpecError(_in_file_order(found), source=source) from None
    missing = _file_problems(data, base_dir, lines)
    if missing:
        raise SpecError(_in_file_order(missing), source=source)
    return spec


def _file_problems(
    data: dict[str, Any], base_dir: Path, lines: dict[tuple[Any, ...], int]
) -> list[tuple[int, str]]:
    """Local files the spec names must exist (checked on the raw YAML, valid or not)."""
    problems: list[tuple[int, str]] = []

    def check(relative: Any, loc: tuple[Any, ...], *, suffix: str | None = None) -> None:
        if not isinstance(relative, str) or not relative.strip():
            return  # the type or value error is reported by validation
        candidate = Path(relative.strip()).expanduser()
        target = candidate if candidate.is_absolute() else base_dir / candidate
        problem = None
        if target.is_dir():
            problem = f"a directory, not a file: {target}"
        elif not target.is_file():
            problem = f"file not found: {target}"
        elif suffix is not None and target.suffix.lower() != suffix:
            # powershell.exe -File runs .ps1 files only; the guest would fail at this stage.
            problem = f"not a PowerShell script ({suffix}): {target}"
        if problem is not None:
            line = lines.get(loc)
            where = f"line {line}: " if line else ""
            problems.append((line or 0, f"{where}{_dotted(loc)}: {problem}"))

    cloudbase = data.get("cloudbase_init")
    if isinstance(cloudbase, dict):
        msi = cloudbase.get("msi")
        if isinstance(msi, str) and not msi.strip().startswith(("https://", "http://")):
            check(msi, ("cloudbase_init", "msi"))
    scripts = data.get("scripts")
    if isinstance(scripts, list):
        for index, script in enumerate(scripts):
            check(script, ("scripts", index), suffix=".ps1")
    return problems


def load_spec(path: str | Path) -> BuildSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"cannot read spec: {exc.strerror}"], source=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError(["the spec is not UTF-8 text"], source=str(path)) from None
    return parse_spec(text, source=str(path), path=path.resolve())


def load_specs(paths: list[str] | list[Path]) -> list[BuildSpec]:
    """Load several specs, reporting the problems of all of them together."""
    specs, problems = [], []
    for path in paths:
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            problems.extend(exc.lines())
    if problems:
        raise SpecError(problems)
    return specs


def json_schema() -> dict[str, Any]:
    schema = BuildSpec.model_json_schema(mode="validation")
    schema["properties"].pop("source_path", None)
    schema["properties"].pop("digest", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "osbuild build spec"
    return schema
