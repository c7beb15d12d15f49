"""cloudbase-init configuration files rendered from the spec."""

from __future__ import annotations

import configparser
from pathlib import Path

from osbuild.media import cloudbase, layout
from osbuild.spec import load_spec

from .helpers import MINIMAL_SPEC, write_spec


def _conf(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    with path.open(encoding="utf-8") as handle:
        parser.read_file(handle)
    assert parser.sections() == []  # everything in [DEFAULT]
    return {k: v.replace("$$", "$") for k, v in parser["DEFAULT"].items()}


def _render(tmp_path: Path, render, cloudbase_yaml: str = ""):
    body = MINIMAL_SPEC.replace(
        "msi: CloudbaseInitSetup_x64.msi", "msi: CloudbaseInitSetup_x64.msi" + cloudbase_yaml
    )
    media = render(load_spec(write_spec(tmp_path / "spec", body)))
    service = _conf(media.root / layout.CLOUDBASE_CONF)
    return service, _conf(media.root / layout.CLOUDBASE_UNATTEND_CONF), media.root


def test_defaults(tmp_path: Path, render) -> None:
    service, unattend, _ = _render(tmp_path, render)
    for conf in (service, unattend):
        assert conf["username"] == "Admin"
        assert conf["groups"] == "Administrators"
        assert conf["inject_user_password"] == "true"
        assert conf["first_logon_behaviour"] == "no"
        assert conf["check_latest_version"] == "false"
        assert conf["logging_serial_port_settings"].startswith("COM1,")
        assert conf["metadata_services"].split(",") == [
            "cloudbaseinit.metadata.services.configdrive.ConfigDriveService",
            "cloudbaseinit.metadata.services.httpservice.HttpService",
        ]
        assert conf["bsdtar_path"].startswith(cloudbase.DEFAULT_INSTALL_DIR + "\\")
    # the service keeps cloudbase-init's own plugin list unless the spec names one
    assert "plugins" not in service
    assert service["log_file"] != unattend["log_file"]
    # the specialize run must neither reboot nor stop the service it hands over to
    assert unattend["plugins"].split(",") == list(cloudbase.UNATTEND_PLUGINS)
    assert unattend["allow_reboot"] == "false"
    assert unattend["stop_service_on_exit"] == "false"


def test_spec_settings_and_overrides(tmp_path: Path, render) -> None:
    service, unattend, root = _render(tmp_path, render, """
  username: cloud-admin
  groups: [Administrators, Remote Desktop Users]
  first_logon_behaviour: always
  inject_metadata_password: false
  metadata_services: [cloudbaseinit.metadata.services.configdrive.ConfigDriveService]
  plugins: [cloudbaseinit.plugins.common.userdata.UserDataPlugin]
  config:
    debug: false
    mtu_use_dhcp_config: false
    real_time_clock_utc: true
    san_policy: OnlineAll
""")
    assert service["username"] == unattend["username"] == "cloud-admin"
    assert service["groups"] == "Administrators,Remote Desktop Users"
    assert service["first_logon_behaviour"] == "always"
    assert service["inject_user_password"] == "false"
    assert service["metadata_services"] == unattend["metadata_services"] == (
        "cloudbaseinit.metadata.services.configdrive.ConfigDriveService")
    assert service["plugins"] == "cloudbaseinit.plugins.common.userdata.UserDataPlugin"
    # `config` overrides osbuild's own values in place and adds new options
    assert service["debug"] == "false"
    assert service["mtu_use_dhcp_config"] == "false"
    assert service["real_time_clock_utc"] == "true"
    assert service["san_policy"] == "OnlineAll"
    text = (root / layout.CLOUDBASE_CONF).read_text()
    assert text.count("debug=") == 1
    # the extras are for the service only
    assert "san_policy" not in unattend


def test_option_names_are_the_current_ones(tmp_path: Path, render) -> None:
    # cloudbase-init's configdrive.py marks config_drive_raw_hhd/_cdrom/_vfat
    # deprecated_for_removal in favour of config_drive_types/config_drive_locations;
    # oslo.log renamed logdir/logfile to log_dir/log_file and dropped `verbose`.
    service, unattend, _ = _render(tmp_path, render)
    for conf in (service, unattend):
        for old in ("config_drive_raw_hhd", "config_drive_cdrom", "config_drive_vfat",
                    "logdir", "logfile", "verbose"):
            assert old not in conf
        # the same search the three old switches (all true) asked for
        assert set(conf["config_drive_types"].split(",")) == {"vfat", "iso"}
        assert set(conf["config_drive_locations"].split(",")) == {"cdrom", "hdd", "partition"}
        assert conf["log_dir"].endswith("\\log\\")
