"""The options osbuild writes into cloudbase-init.conf and cloudbase-init-unattend.conf."""

from __future__ import annotations

from dataclasses import dataclass

from osbuild.spec import CloudbaseInitSpec

# The rendered files name the MSI's default folder; the guest rewrites it to the real one.
DEFAULT_INSTALL_DIR = "C:\\Program Files\\Cloudbase Solutions\\Cloudbase-Init"
# What cloudbase-init runs in the specialize pass of a deployed instance (its Unattend.xml).
UNATTEND_PLUGINS = (
    "cloudbaseinit.plugins.common.mtu.MTUPlugin",
    "cloudbaseinit.plugins.common.sethostname.SetHostNamePlugin",
    "cloudbaseinit.plugins.windows.extendvolumes.ExtendVolumesPlugin",
)


@dataclass(frozen=True)
class Option:
    name: str
    value: str | int | bool | tuple[str, ...]


# Option names as current cloudbase-init and oslo.log spell them: config_drive_types and
# config_drive_locations replace the deprecated config_drive_raw_hhd/_cdrom/_vfat
# (cloudbaseinit/metadata/services/configdrive.py), log_dir and log_file replace oslo.log's
# deprecated logdir and logfile, and oslo.log no longer has `verbose`.
CONFIG_DRIVE_TYPES = ("vfat", "iso")
CONFIG_DRIVE_LOCATIONS = ("cdrom", "hdd", "partition")


def _common(spec: CloudbaseInitSpec, logfile: str) -> list[Option]:
    base = DEFAULT_INSTALL_DIR
    return [
        Option("username", spec.username),
        # English names: the guest renames the built-in groups as localised media call
        # them (stage-cloudbaseinit.ps1, from their well-known SIDs in the plan).
        Option("groups", spec.groups),
        Option("inject_user_password", spec.inject_metadata_password),
        Option("first_logon_behaviour", spec.first_logon_behaviour),
        Option("config_drive_types", CONFIG_DRIVE_TYPES),
        Option("config_drive_locations", CONFIG_DRIVE_LOCATIONS),
        Option("bsdtar_path", f"{base}\\bin\\bsdtar.exe"),
        Option("mtools_path", f"{base}\\bin\\"),
        Option("debug", True),
        Option("log_dir", f"{base}\\log\\"),
        Option("log_file", logfile),
        Option("default_log_levels", "comtypes=INFO,suds=INFO,iso8601=WARN,requests=WARN"),
        Option("logging_serial_port_settings", "COM1,115200,N,8"),
        Option("mtu_use_dhcp_config", True),
        Option("ntp_use_dhcp_config", True),
        Option("local_scripts_path", f"{base}\\LocalScripts\\"),
        # Builders and many clouds have no internet access; the check only logs noise.
        Option("check_latest_version", False),
        Option("metadata_services", spec.metadata_services),
    ]


def _merge(options: list[Option], extra: dict[str, str | int | bool]) -> list[Option]:
    names = [option.name for option in options]
    merged = list(options)
    for name, value in extra.items():
        if name in names:
            merged[names.index(name)] = Option(name, value)
        else:
            merged.append(Option(name, value))
    return merged


def service_options(spec: CloudbaseInitSpec) -> list[Option]:
    """cloudbase-init.conf: the service run at first boot; the spec's `config` wins."""
    options = _common(spec, "cloudbase-init.log")
    if spec.plugins is not None:
        options.append(Option("plugins", spec.plugins))
    return _merge(options, spec.config)


def unattend_options(spec: CloudbaseInitSpec) -> list[Option]:
    """cloudbase-init-unattend.conf: the short run inside sysprep's specialize pass."""
    options = _common(spec, "cloudbase-init-unattend.log")
    options += [
        Option("plugins", UNATTEND_PLUGINS),
        Option("allow_reboot", False),
        Option("stop_service_on_exit", False),
    ]
    return options
