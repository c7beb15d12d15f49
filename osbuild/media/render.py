"""Render a build spec into the guest media: answer file, scripts, configs, plan and ISO."""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from osbuild import markers, resources
from osbuild.errors import InvalidInput
from osbuild.media import cloudbase, configiso, layout, stages, unattend, windows
from osbuild.media.layout import (
    GuestPlan,
    PlanCloudbaseInit,
    PlanHygiene,
    PlanUpdates,
    PlanVirtio,
    PlanWindows,
)
from osbuild.media.quoting import (
    IniValue,
    PsLiteral,
    check_xml_text,
    ini_key,
    ini_value,
    ps_value,
)
from osbuild.spec import BuildSpec

TREE_DIR = "config"
ISO_NAME = "config.iso"
RESUME_TASK = "osbuild-resume"
PASSWORD_LENGTH = 24
_PASSWORD_SYMBOLS = "!#%*+-.:=?@_~"
_BUILD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NONCE_RE = re.compile(rf"^[0-9a-f]{{{markers.NONCE_LENGTH}}}$")
_SCRIPT_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")
_SCRIPT_STEM_MAX = 40
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RenderedMedia:
    root: Path  # the rendered tree (same paths as on the ISO, per media/layout.py)
    iso_path: Path  # the config ISO
    nonce: str  # 32 hex, markers.NONCE_LENGTH
    plan: GuestPlan  # what was written to layout.PLAN_FILE
    sha256: str  # of the ISO
    size: int  # bytes of the ISO


def generate_password() -> str:
    """A random per-build password meeting Windows' complexity rules (all four classes)."""
    classes = (string.ascii_uppercase, string.ascii_lowercase, string.digits, _PASSWORD_SYMBOLS)
    alphabet = "".join(classes)
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))
        if all(any(ch in group for ch in candidate) for group in classes):
            return candidate


def new_nonce() -> str:
    return secrets.token_hex(markers.NONCE_LENGTH // 2)


# --------------------------------------------------------------------------- templates


def _only_quoted(value: Any) -> Any:
    # In scripts and ini files every inserted value must have passed through `ps` or `ini`:
    # a bare string here would be a quoting bug, so rendering stops instead.
    if isinstance(value, PsLiteral | IniValue) or value is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidInput([f"template bug: value {type(value).__name__} placed without quoting"])


def _xml_finalize(value: Any) -> Any:
    return check_xml_text(value) if isinstance(value, str) else value


def _environment(*, xml: bool) -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.templates_dir()))
    if xml:
        env = jinja2.Environment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=True,
            keep_trailing_newline=True,
            finalize=_xml_finalize,
        )
    else:
        env = jinja2.Environment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_only_quoted,
        )
        env.filters["ps"] = ps_value
        env.filters["ini"] = ini_value
        env.filters["ini_key"] = ini_key
    return env


# --------------------------------------------------------------------------- the tree


def _prepare_tree(tree: Path) -> None:
    if tree.exists():
        # Re-rendering into the same directory replaces an earlier render, nothing else.
        if not (tree / layout.TAG_FILE).is_file():
            raise InvalidInput([f"{tree}: exists and is not an osbuild config tree"])
        shutil.rmtree(tree)
    tree.mkdir(parents=True, mode=0o700)


def _write(
    tree: Path, iso_path: str, text: str, *, bom: bool = False, secret: bool = False
) -> Path:
    target = tree / iso_path
    target.parent.mkdir(parents=True, exist_ok=True)
    # Windows PowerShell 5.1 reads a script without BOM in the ANSI code page.
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    target.write_bytes(data)
    if secret:
        target.chmod(0o600)
    return target


_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _copy_user_script(source: Path, target: Path) -> None:
    """A user's script as Windows PowerShell 5.1 will read it: UTF-8 gets its BOM (without
    one, 5.1 reads the file in the ANSI code page and mangles every non-ASCII character).
    A script that already has a BOM, or is not UTF-8 (meant for the ANSI page), is kept."""
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not data.startswith(_BOMS):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            data = _BOMS[0] + data
    target.write_bytes(data)


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy in chunks while hashing: one pass, never the whole file in memory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def user_script_name(index: int, source: str) -> str:
    """``NN-<name>.ps1`` for the spec's index-th script (0-based), safe on every filesystem."""
    stem = Path(source).name
    if stem.lower().endswith(".ps1"):
        stem = stem[:-4]
    stem = _SCRIPT_NAME_RE.sub("-", stem).strip("-.")[:_SCRIPT_STEM_MAX] or "script"
    return f"{index + 1:02d}-{stem}.ps1"


# What a refresh runs on the current image: its drivers, cloudbase-init and the user's
# scripts are there already; it patches, cleans up and generalizes again.
REFRESH_STAGES = ("updates", "cleanup", "sysprep")
USER_DATA_TEMPLATE = "cloudbase-init/refresh-userdata.ps1.j2"


def refresh_user_data() -> str:
    """The user data a refresh builder boots with: cloudbase-init starts the driver as SYSTEM.

    It holds no secret and no nonce (both stay on the config ISO), so a resumed build that
    must boot again renders it anew.
    """
    context = {"resume_command": unattend.resume_command()}
    return _environment(xml=False).get_template(USER_DATA_TEMPLATE).render(context)


def _check_inputs(build_id: str, nonce: str, password: str) -> None:
    problems = []
    if not _BUILD_ID_RE.match(build_id):
        problems.append(f"build id {build_id!r}: use letters, digits, '.', '_' or '-' (max 64)")
    if not _NONCE_RE.match(nonce):
        problems.append(f"nonce: must be {markers.NONCE_LENGTH} lowercase hex digits")
    if not password or any(not ch.isprintable() for ch in password):
        # Never echo the password itself.
        problems.append("password: must be non-empty printable text")
    if problems:
        raise InvalidInput(problems)


def render_media(
    spec: BuildSpec,
    out_dir: Path,
    *,
    build_id: str,
    nonce: str | None = None,
    password: str | None = None,
    install_image: str | None = None,
    refresh: bool = False,
) -> RenderedMedia:
    """Write the config tree to ``out_dir/config`` and the ISO to ``out_dir/config.iso``.

    ``install_image``: the `/IMAGE/NAME` preflight found on the ISO (an evaluation ISO's
    differs from the retail name); default: the spec's edition's retail name.
    ``refresh``: media for patching an installed image, with the refresh's stages and no
    answer file (no Setup runs, so no password is needed or written)."""
    image_name = install_image or spec.windows.image_name
    nonce = nonce or new_nonce()
    password = password or generate_password()
    _check_inputs(build_id, nonce, password)
    out_dir = Path(out_dir)
    tree = out_dir / TREE_DIR
    _prepare_tree(tree)

    cbi = spec.cloudbase_init
    groups = tuple(windows.group_identity(name) for name in cbi.groups)
    if cbi.is_url:
        assert cbi.sha256 is not None  # the spec requires it for a URL
        plan_cbi = PlanCloudbaseInit(url=cbi.msi, sha256=cbi.sha256, groups=groups)
    else:
        digest = _copy_hashing(spec.resolve_path(cbi.msi), tree / layout.CLOUDBASE_MSI)
        if cbi.sha256 is not None and cbi.sha256 != digest:
            raise InvalidInput(
                [f"cloudbase_init.sha256: {cbi.msi} has sha256 {digest}, not {cbi.sha256}"]
            )
        plan_cbi = PlanCloudbaseInit(path=layout.CLOUDBASE_MSI, sha256=digest,
                                     groups=groups)

    user_scripts = []
    for index, source in enumerate(spec.scripts):
        iso_path = f"{layout.USER_SCRIPTS_DIR}/{user_script_name(index, source)}"
        _copy_user_script(spec.resolve_path(source), tree / iso_path)
        user_scripts.append(iso_path)

    plan = GuestPlan(
        build_id=build_id,
        windows=PlanWindows(
            version=spec.windows.version,
            image_name=image_name,
            firmware=spec.windows.firmware,
            disk_bus=spec.builder.disk_bus,
        ),
        virtio=PlanVirtio(
            os_folder=windows.virtio_os_folder(spec.windows.version),
            winpe_drivers=spec.virtio.winpe_drivers,
            guest_tools=spec.virtio.guest_tools,
            qemu_ga=spec.virtio.qemu_ga,
        ),
        cloudbase_init=plan_cbi,
        updates=PlanUpdates(enabled=spec.updates.enabled, max_passes=spec.updates.max_passes,
                            attempts=stages.UPDATE_ATTEMPTS,
                            retry_delay=stages.UPDATE_RETRY_DELAY,
                            network_wait=stages.NETWORK_WAIT),
        hygiene=PlanHygiene(**spec.hygiene.model_dump()),
        stages=(),
        scripts=tuple(user_scripts),
        settle_reboots=stages.MAX_SETTLE_REBOOTS,
        kind="refresh" if refresh else "install",
    )
    planned = stages.planned(plan)
    if refresh:
        planned = tuple(stage for stage in planned if stage in REFRESH_STAGES)
    plan = plan.model_copy(update={"stages": planned})

    if not refresh:
        xml_env = _environment(xml=True)
        answer = xml_env.get_template("autounattend.xml.j2").render(
            unattend.context(spec, password, image_name=image_name))
        _write(tree, layout.ANSWER_FILE, answer, secret=True)

    text_env = _environment(xml=False)
    script_context = _script_context(spec, build_id)
    scripts_dir = layout.SCRIPTS_DIR
    _write(tree, f"{scripts_dir}/lib.ps1",
           text_env.get_template("scripts/lib.ps1.j2").render(script_context), bom=True)
    _write(tree, layout.FIRSTLOGON_SCRIPT,
           text_env.get_template("scripts/firstlogon.ps1.j2").render(script_context), bom=True)
    for name in plan.stages:
        stage = stages.by_name(name)
        assert stage is not None and stage.script is not None  # stages.planned chose it
        text = text_env.get_template(stage.script).render(script_context)
        _write(tree, stages.script_file(name), text, bom=True)

    for iso_path, options in (
        (layout.CLOUDBASE_CONF, cloudbase.service_options(cbi)),
        (layout.CLOUDBASE_UNATTEND_CONF, cloudbase.unattend_options(cbi)),
    ):
        template = f"cloudbase-init/{Path(iso_path).name}.j2"
        _write(tree, iso_path, text_env.get_template(template).render(options=options))

    _write(tree, layout.TAG_FILE, layout.TAG_CONTENT)
    _write(tree, layout.NONCE_FILE, nonce + "\n")
    _write(tree, layout.PLAN_FILE, plan.to_json())

    iso_file = out_dir / ISO_NAME
    sha256, size = configiso.build_iso(tree, iso_file)
    return RenderedMedia(
        root=tree, iso_path=iso_file, nonce=nonce, plan=plan, sha256=sha256, size=size
    )


def rendered_passwords(out_dir: Path) -> set[str] | None:
    """The passwords in the answer file :func:`render_media` left in ``out_dir`` (its tree,
    else its ISO); None when neither is there. Never logged: a resume redacts them."""
    answer = Path(out_dir) / TREE_DIR / layout.ANSWER_FILE
    if answer.is_file():
        return unattend.answer_file_passwords(answer.read_bytes())
    iso_file = Path(out_dir) / ISO_NAME
    if not iso_file.is_file():
        return None
    try:
        data = configiso.read_config_file(iso_file, layout.ANSWER_FILE)
    except InvalidInput:
        return None  # cut short while being written
    return unattend.answer_file_passwords(data) if data is not None else None


def _script_context(spec: BuildSpec, build_id: str) -> dict[str, Any]:
    win_path = str.maketrans("/", "\\")
    return {
        "family": spec.name,
        "build_id": build_id,
        "is_client": not windows.is_server(spec.windows.version),
        "build_account": unattend.build_account(spec),
        "cloudbase_init_username": spec.cloudbase_init.username,
        "inject_metadata_password": spec.cloudbase_init.inject_metadata_password,
        "cloudbase_init_default_dir": cloudbase.DEFAULT_INSTALL_DIR,
        "resume_task": RESUME_TASK,
        "resume_command": unattend.resume_command(),
        "marker_prefix": markers.PREFIX,
        "sysprep_hold": int(markers.SYSPREP_HOLD),
        "sysprep_ack_url": markers.SYSPREP_ACK_URL,
        "marker_detail_max": markers.DETAIL_MAX,
        # From the stage table: which script runs each plan stage, and before which stages
        # the driver restarts Windows while a reboot is pending.
        "stage_scripts": {s.name: stages.script_name(s.name)
                          for s in stages.GUEST_STAGES if s.in_plan},
        "settle_stages": list(stages.settling()),
        "update_host": stages.UPDATE_HOST,
        "sysprep_error_lines": stages.SYSPREP_ERROR_LINES,
        "tag_file": layout.TAG_FILE.translate(win_path),
        "nonce_file": layout.NONCE_FILE.translate(win_path),
        "plan_file": layout.PLAN_FILE.translate(win_path),
        "cloudbase_dir": layout.CLOUDBASE_DIR.translate(win_path),
        "conf_files": [
            Path(layout.CLOUDBASE_CONF).name,
            Path(layout.CLOUDBASE_UNATTEND_CONF).name,
        ],
        "guest_tools_exe": windows.VIRTIO_GUEST_TOOLS,
        "qemu_ga_msi": windows.VIRTIO_QEMU_GA_MSI.translate(win_path),
        "build_registry": [value for value in unattend.CLIENT_REGISTRY if value.build_only],
    }
