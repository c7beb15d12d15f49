"""The build spec: defaults, and one test per class of mistake naming the field and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from osbuild import resources
from osbuild.errors import EXIT_INVALID_INPUT, SpecError
from osbuild.spec import (
    BuildSpec,
    format_duration,
    json_schema,
    load_spec,
    load_specs,
    parse_duration,
    parse_spec,
)
from tests.media.helpers import MINIMAL_SPEC as BASE

SHA = "a" * 64


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    return tmp_path


def load(spec_dir: Path, text: str) -> BuildSpec:
    path = spec_dir / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


def problems(spec_dir: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(spec_dir, text)
    assert info.value.exit_code == EXIT_INVALID_INPUT
    return info.value.lines()


def edit(old: str, new: str, base: str = BASE) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_defaults_an_operator_expects(spec_dir: Path) -> None:
    spec = load(spec_dir, BASE)
    assert spec.windows.firmware == "bios"
    assert spec.windows.locale == "en-US"
    assert spec.windows.timezone == "UTC"
    assert spec.windows.product_key is None
    assert spec.windows.image_name == "Windows Server 2022 SERVERSTANDARD"
    assert spec.virtio.winpe_drivers == ("viostor", "vioscsi", "NetKVM")
    assert spec.updates.enabled is False
    assert spec.builder.target == "volume"
    assert spec.builder.disk_bus == "virtio"
    assert spec.builder.timeout == 6 * 3600
    assert spec.image.visibility == "private"
    assert spec.source_path == (spec_dir / "spec.yaml").resolve()
    assert len(spec.digest) == 64


def test_spec_is_immutable(spec_dir: Path) -> None:
    spec = load(spec_dir, BASE)
    with pytest.raises(Exception, match="frozen"):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(Exception, match="frozen"):
        spec.windows.edition = "SERVERDATACENTER"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(p.name for p in resources.examples_dir().glob("*.yaml")))
def test_examples_validate(tmp_path: Path, name: str) -> None:
    text = (resources.examples_dir() / name).read_text()
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    spec = load(tmp_path, text)
    assert spec.name
    assert spec.image_name_for("b1")


def test_edition_is_case_insensitive_and_canonical(spec_dir: Path) -> None:
    spec = load(spec_dir, edit("SERVERSTANDARD", "serverdatacentercore"))
    assert spec.windows.edition == "SERVERDATACENTERCORE"
    assert spec.windows.image_name == "Windows Server 2022 SERVERDATACENTERCORE"


def test_kms_resolves_to_the_public_gvlk(spec_dir: Path) -> None:
    spec = load(spec_dir, edit("iso_image: win.iso", "iso_image: win.iso\n  product_key: kms"))
    assert spec.windows.resolved_product_key() == "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"
    # the key never shows in the spec's repr (logs, tracebacks)
    assert "VDYBN" not in repr(spec)


# Microsoft's table of KMS client setup keys (learn.microsoft.com, "KMS client activation
# and product keys"), for every edition osbuild's catalog has, copied independently of
# osbuild/media/windows.py.
PUBLISHED_GVLKS = {
    **{(v, e): k for v, table in {
        "2016": {"Standard": "WC2BQ-8NRM3-FDDYY-2BFGV-KHKQY",
                 "Datacenter": "CB7KF-BWN84-R7R2Y-793K2-8XDDG"},
        "2019": {"Standard": "N69G4-B89J2-4G8F4-WWYCC-J464C",
                 "Datacenter": "WMDGN-G9PQG-XVVXX-R3X43-63DFG"},
        "2022": {"Standard": "VDYBN-27WPP-V4HQT-9VMD4-VMK7H",
                 "Datacenter": "WX4NM-KYWYW-QJJR4-XV3QB-6VM33"},
        "2025": {"Standard": "TVRH6-WHNXV-R9WG3-9XRFY-MY832",
                 "Datacenter": "D764K-2NDRG-47T6Q-P8T8W-YP6DF"},
    }.items() for edition, k in table.items()
       for e in (f"SERVER{edition.upper()}", f"SERVER{edition.upper()}CORE")},
    **{(v, e): k for v in ("10", "11") for e, k in {
        "Pro": "W269N-WFGWX-YVC9B-4J6C9-T83GX",
        "Pro N": "MH37W-N47XK-V7XM9-C7227-GCQG9",
        "Pro for Workstations": "NRG8B-VKK3Q-CXVCJ-9G2XF-6Q84J",
        "Pro for Workstations N": "9FNHH-K3HBT-3W4TD-6383H-6XYWF",
        "Pro Education": "6TP4R-GNPTD-KYYHQ-7B7DP-J447Y",
        "Pro Education N": "YVWGF-BXNMC-HTQYQ-CPQ99-66QFC",
        "Education": "NW6C2-QMPVW-D7KKK-3GKT6-VCFB2",
        "Education N": "2WH4N-8QGBV-H22JP-CT43Q-MDWWJ",
        "Enterprise": "NPPR9-FWDCX-D2C8J-H872K-2YT43",
        "Enterprise N": "DPH2V-TTNVB-4X9Q3-TJR4H-KHJW4",
        "Enterprise G": "YYVX9-NTFWV-6MDM3-9PT4T-4M68B",
        "Enterprise G N": "44RPN-FTY23-9VTTB-MP9BX-T84FV",
        "Enterprise LTSC": "M7XTQ-FN8P6-TTKYV-9D4CC-J462D",
        "Enterprise N LTSC": "92NFX-8DJQP-P6BBQ-THF9C-7CG2H",
        "IoT Enterprise LTSC": "KBN8V-HFGQ4-MGXVD-347P6-PDQGT",
    }.items()},
}


@pytest.mark.parametrize(("version", "edition"), PUBLISHED_GVLKS,
                         ids=[f"{v}-{e}" for v, e in PUBLISHED_GVLKS])
def test_kms_covers_every_edition_with_a_published_key(
        spec_dir: Path, version: str, edition: str) -> None:
    firmware = "uefi" if version == "11" else "bios"
    spec = load(spec_dir, edit(
        'version: "2022"\n  edition: SERVERSTANDARD\n  iso_image: win.iso',
        f'version: "{version}"\n  edition: "{edition}"\n  iso_image: win.iso\n'
        f"  firmware: {firmware}\n  product_key: kms"))
    assert spec.windows.resolved_product_key() == PUBLISHED_GVLKS[(version, edition)]


def test_explicit_product_key_is_secret(spec_dir: Path) -> None:
    key = "ABCDE-12345-FGHIJ-67890-KLMNO"
    spec = load(spec_dir, edit("iso_image: win.iso", f"iso_image: win.iso\n  product_key: {key}"))
    assert spec.windows.resolved_product_key() == key
    assert key not in repr(spec)
    assert key not in spec.model_dump_json()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90m", 5400), ("4h", 14400), ("1h30m", 5400), ("45s", 45), ("2d", 172800), (120, 120)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_duration_round_trip() -> None:
    assert format_duration(5400) == "1h30m"
    assert parse_duration(format_duration(3725)) == 3725


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.4, "0s"), (59, "59s"), (86399, "23h59m59s"), (86400, "1d"),
    (45 * 86400, "45d"), (3 * 86400 + 4 * 3600, "3d4h"), (86400 + 61, "1d1m1s"),
])
def test_durations_show_days(seconds: float, shown: str) -> None:
    # Image ages and refresh.max_age (45d) run to weeks: "1080h" is not how operators read them.
    assert format_duration(seconds) == shown
    if seconds >= 1:
        assert parse_duration(shown) == int(seconds)


def test_stage_timeouts_parse(spec_dir: Path) -> None:
    spec = load(spec_dir, edit("flavor: m1.large", "flavor: m1.large\n  stage_timeouts:\n"
                                                   "    updates: 3h\n    winpe: 45m"))
    assert spec.builder.stage_timeouts.updates == 3 * 3600
    assert spec.builder.stage_timeouts.winpe == 45 * 60


# --------------------------------------------------------------------------- mistakes
# (id, spec text, field named in the message, text the message must contain, line needle)
MISTAKES = [
    ("unknown key", edit("flavor: m1.large", "flavor: m1.large\n  flavour: m1.small"),
     "builder.flavour", "unknown key", "flavour:"),
    ("unknown top-level key", BASE + "extras: true\n", "extras", "unknown key", "extras:"),
    ("wrong type", edit("flavor: m1.large", "flavor: m1.large\n  disk_gb: lots"),
     "builder.disk_gb", "must be a whole number", "disk_gb:"),
    ("wrong type bool", edit("iso_image: win.iso", "iso_image: win.iso\n  secure_boot: maybe"),
     "windows.secure_boot", "must be true or false", "secure_boot:"),
    ("wrong type list", edit("iso_image: virtio-win.iso",
                             "iso_image: virtio-win.iso\n  winpe_drivers: viostor"),
     "virtio.winpe_drivers", "must be a list", "winpe_drivers:"),
    ("bad enum", edit("flavor: m1.large", "flavor: m1.large\n  target: cloud"),
     "builder.target", "'volume' or 'local'", "target:"),
    ("bad version", edit('"2022"', '"2012"'), "windows.version",
     "must be '2016', '2019', '2022', '2025', '10' or '11'", "version:"),
    ("section not a mapping", edit("builder:\n  flavor: m1.large\n", "builder: [m1.large]\n"),
     "builder", "must be a mapping (key: value lines beneath it)", "builder:"),
    ("bad duration", edit("flavor: m1.large", "flavor: m1.large\n  timeout: forever"),
     "builder.timeout", "not a duration", "timeout:"),
    ("zero duration", edit("flavor: m1.large",
                           "flavor: m1.large\n  stage_timeouts:\n    updates: 0m"),
     "builder.stage_timeouts.updates", "positive", "updates:"),
    ("missing required section", edit("builder:\n  flavor: m1.large\n", ""),
     "builder", "required", None),
    ("missing required field", edit("  flavor: m1.large\n", "  disk_gb: 40\n"),
     "builder.flavor", "required", "builder:"),
    ("out of range", edit("flavor: m1.large", "flavor: m1.large\n  disk_gb: 5"),
     "builder.disk_gb", "greater than or equal to 20", "disk_gb:"),
    ("bad edition for version", edit("SERVERSTANDARD", "Pro"),
     "windows.edition", "not an edition of Windows 2022", "edition:"),
    ("client edition for server list", edit(
        'version: "2022"\n  edition: SERVERSTANDARD',
        'version: "10"\n  edition: SERVERSTANDARD'),
     "windows.edition", "not an edition of Windows 10", "edition:"),
    ("secure boot without uefi", edit("iso_image: win.iso",
                                      "iso_image: win.iso\n  secure_boot: true"),
     "windows.secure_boot", "uefi", "secure_boot:"),
    ("tpm without uefi", edit("iso_image: win.iso", "iso_image: win.iso\n  tpm: true"),
     "windows.tpm", "uefi", "tpm:"),
    ("windows 11 on bios", edit('version: "2022"\n  edition: SERVERSTANDARD',
                                'version: "11"\n  edition: Pro'),
     "windows.firmware", "needs uefi", "windows:"),
    ("http url", edit("msi: CloudbaseInitSetup_x64.msi",
                      f"msi: http://example.org/c.msi\n  sha256: '{SHA}'"),
     "cloudbase_init.msi", "https", "msi:"),
    ("url without sha256", edit("msi: CloudbaseInitSetup_x64.msi",
                                "msi: https://example.org/c.msi"),
     "cloudbase_init.sha256", "required", "cloudbase_init:"),
    ("malformed sha256", edit("msi: CloudbaseInitSetup_x64.msi",
                              "msi: https://example.org/c.msi\n  sha256: abc"),
     "cloudbase_init.sha256", "64 hex digits", "sha256:"),
    ("missing local msi", edit("msi: CloudbaseInitSetup_x64.msi", "msi: missing.msi"),
     "cloudbase_init.msi", "file not found", "msi:"),
    ("missing user script", BASE + "scripts:\n  - setup.ps1\n",
     "scripts[0]", "file not found", "- setup.ps1"),
    ("bad placeholder", edit("test-{date}", "test-{when}"),
     "image.name", "unknown placeholder {when}", "name: \"test"),
    ("unbalanced brace", edit("test-{date}", "test-{name"),
     "image.name", "'{' without '}'", "name: \"test"),
    ("stray closing brace", edit("test-{date}", "test-name}"),
     "image.name", "'}' without '{'", "name: \"test"),
    ("empty placeholder", edit("test-{date}", "test-{}"),
     "image.name", "empty placeholder", "name: \"test"),
    ("placeholder attribute", edit("test-{date}", "test-{name.upper}"),
     "image.name", "unknown placeholder {name.upper}", "name: \"test"),
    ("name too long for glance", edit("test-{date}", "test-{build_id}" + "x" * 240),
     "image.name", "longer than 255", "name: \"test"),
    ("reserved property", edit('name: "test-{date}"',
                               'name: "test-{date}"\n  properties:\n    osbuild_family: x'),
     "image.properties.osbuild_family", "osbuild's own", "osbuild_family:"),
    ("glance field as property", edit('name: "test-{date}"',
                                      'name: "test-{date}"\n  properties:\n    visibility: x'),
     "image.properties.visibility", "Glance's own field", "visibility:"),
    ("bad family name", edit("name: test-family", "name: Test Family"),
     "name", "lowercase", "name: Test"),
    ("product key not text",
     edit("iso_image: win.iso", "iso_image: win.iso\n  product_key: 12345"),
     "windows.product_key", "must be text", "product_key:"),
    ("bad product key",
     edit("iso_image: win.iso", "iso_image: win.iso\n  product_key: ABCDE-12345"),
     "windows.product_key", "5 groups of 5 letters or digits", "product_key:"),
    ("no public kms key", edit(
        'version: "2022"\n  edition: SERVERSTANDARD\n  iso_image: win.iso',
        'version: "11"\n  edition: IoT Enterprise\n  iso_image: win.iso\n  firmware: uefi\n'
        "  product_key: kms"),
     "windows.product_key", "no public KMS key", "product_key:"),
    ("bad locale", edit("iso_image: win.iso", "iso_image: win.iso\n  locale: english"),
     "windows.locale", "not a Windows locale", "locale:"),
    ("unknown driver", edit("iso_image: virtio-win.iso",
                            "iso_image: virtio-win.iso\n  winpe_drivers: [viostor, floppy]"),
     "virtio.winpe_drivers", "unknown driver(s) floppy", "winpe_drivers:"),
    ("storage driver missing for bus", edit("iso_image: virtio-win.iso",
                                            "iso_image: virtio-win.iso\n  winpe_drivers: [NetKVM]"),
     "virtio.winpe_drivers", "needs viostor", "winpe_drivers:"),
    ("driver without a build for the version", edit(
        "iso_image: virtio-win.iso",
        "iso_image: virtio-win.iso\n  winpe_drivers: [viostor, qxldod]"),
     "virtio.winpe_drivers", "no 2k22 build of qxldod", "winpe_drivers:"),
    ("update cap out of range", BASE + "updates:\n  enabled: true\n  max_passes: 0\n",
     "updates.max_passes", "greater than or equal to 1", "max_passes:"),
    ("bad cloudbase-init option",
     edit("msi: CloudbaseInitSetup_x64.msi",
          "msi: CloudbaseInitSetup_x64.msi\n  config:\n    Bad-Key: 1"),
     "cloudbase_init.config", "not a cloudbase-init option name", "config:"),
    ("bad plugin path", edit("msi: CloudbaseInitSetup_x64.msi",
                             "msi: CloudbaseInitSetup_x64.msi\n  plugins: ['rm -rf']"),
     "cloudbase_init.plugins", "Python class path", "plugins:"),
    ("bad account name", edit("msi: CloudbaseInitSetup_x64.msi",
                              "msi: CloudbaseInitSetup_x64.msi\n  username: 'a;b'"),
     "cloudbase_init.username", "Windows account name", "username:"),
    ("multi-line text", edit("iso_image: win.iso", 'iso_image: "win\\nx.iso"'),
     "windows.iso_image", "one line", "iso_image: \"win"),
    ("internal field", BASE + "digest: abc\n", "digest", "unknown key", "digest:"),
    ("clouds as a mapping", BASE + "clouds:\n  east: {}\n", "clouds", "must be a list",
     "clouds:"),
    ("duplicate key", edit("flavor: m1.large", "flavor: m1.large\n  flavor: m1.small"),
     "builder.flavor", "given twice", "flavor: m1.small"),
    ("yaml syntax error", edit("flavor: m1.large", "flavor: [m1.large"),
     None, "not valid YAML", None),
]


@pytest.mark.parametrize(
    ("text", "field", "needle", "line_needle"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_mistake_is_reported_with_field_and_line(
    spec_dir: Path, text: str, field: str | None, needle: str, line_needle: str | None
) -> None:
    lines = problems(spec_dir, text)
    assert len(lines) == 1, lines
    message = lines[0]
    assert message.startswith(f"{spec_dir / 'spec.yaml'}: ")
    assert needle in message
    if field is not None:
        assert f": {field}: " in message, message
    if line_needle is not None:
        assert f": line {line_of(text, line_needle)}: " in message, message
    elif field is None:
        assert re.search(r": line \d+: ", message), message


def test_every_problem_is_reported_at_once_in_file_order(spec_dir: Path) -> None:
    text = edit("flavor: m1.large", "flavor: m1.large\n  target: cloud\n  disk_gb: 1")
    text = edit("SERVERSTANDARD", "Home", text)
    text = edit("test-{date}", "test-{when}", text)
    lines = problems(spec_dir, text)
    fields = [re.search(r"line \d+: ([\w.\[\]]+):", line).group(1) for line in lines]
    assert fields == ["windows.edition", "builder.target", "builder.disk_gb", "image.name"]
    numbers = [int(re.search(r"line (\d+):", line).group(1)) for line in lines]
    assert numbers == sorted(numbers)


def test_load_specs_reports_every_file(spec_dir: Path) -> None:
    good = spec_dir / "good.yaml"
    good.write_text(BASE)
    bad = spec_dir / "bad.yaml"
    bad.write_text(edit("SERVERSTANDARD", "Home"))
    missing = spec_dir / "missing.yaml"
    with pytest.raises(SpecError) as info:
        load_specs([good, bad, missing])
    lines = info.value.lines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{bad}: line 4: windows.edition")
    assert lines[1].startswith(f"{missing}: cannot read spec")


def test_non_mapping_and_non_utf8(spec_dir: Path) -> None:
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        parse_spec("- a\n- b\n")
    path = spec_dir / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)


def test_json_schema_describes_the_spec() -> None:
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) >= {"name", "windows", "virtio", "cloudbase_init",
                                       "builder", "image"}
    assert "source_path" not in schema["properties"]
    assert "digest" not in schema["properties"]
    windows = schema["$defs"]["WindowsSpec"]
    assert windows["additionalProperties"] is False
    # Text or number, as validate takes them (YAML reads an unquoted 2022 as a number).
    assert set(windows["properties"]["version"]["enum"]) == {"2016", "2019", "2022", "2025",
                                                             "10", "11", 2016, 2019, 2022,
                                                             2025, 10, 11}


def test_a_rejected_product_key_is_not_echoed(spec_dir: Path) -> None:
    secret = "ABCDE-12345-FGHIJ-67890-KLMN"  # one character short
    lines = problems(spec_dir, edit("iso_image: win.iso",
                                    f"iso_image: win.iso\n  product_key: {secret}"))
    assert "windows.product_key" in lines[0]
    assert secret not in lines[0]


def test_missing_files_are_reported_with_other_problems(spec_dir: Path) -> None:
    text = edit("msi: CloudbaseInitSetup_x64.msi", "msi: missing.msi")
    text = edit("SERVERSTANDARD", "Home", text) + "scripts:\n  - nope.ps1\n"
    text = edit("flavor: m1.large", "flavor: m1.large\n  target: cloud", text)
    lines = problems(spec_dir, text)
    assert len(lines) == 4
    # one list, in file order
    assert "windows.edition" in lines[0]
    assert "cloudbase_init.msi: file not found" in lines[1]
    assert "builder.target" in lines[2]
    assert "scripts[0]: file not found" in lines[3]



def test_the_digest_ignores_comments_layout_and_key_order() -> None:
    text = BASE.replace("msi: CloudbaseInitSetup_x64.msi",
                        "msi: https://example.invalid/cbi.msi\n  sha256: " + "a" * 64)
    base = parse_spec(text).digest
    noted = "# a note\n" + text.replace("name: test-family", "name: 'test-family'  # family")
    assert parse_spec(noted).digest == base
    reordered = text.replace("builder:\n  flavor: m1.large\n", "") + "builder: {flavor: m1.large}\n"
    assert parse_spec(reordered).digest == base
    assert parse_spec(text.replace("m1.large", "m1.xlarge")).digest != base


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("locale", "de-de", "de-DE"),
    ("locale", "sr-latn-rs", "sr-Latn-RS"),
    ("timezone", "w. europe standard time", "W. Europe Standard Time"),
    ("timezone", "UTC", "UTC"),
    ("input_locale", "0407:00000407; en-us", "0407:00000407;en-US"),
])
def test_windows_names_are_taken_as_windows_spells_them(field: str, value: str,
                                                        expected: str) -> None:
    spec = parse_spec(_url_msi(BASE).replace("iso_image: win.iso",
                                             f"iso_image: win.iso\n  {field}: '{value}'"))
    assert getattr(spec.windows, field) == expected


@pytest.mark.parametrize(("field", "value", "message"), [
    ("locale", "en-UK", "windows.locale: 'en-UK' is not a Windows locale (did you mean en-US"),
    ("locale", "english", "windows.locale: 'english' is not a Windows locale"),
    ("timezone", "Europe/Berlin",
     "windows.timezone: 'Europe/Berlin' is an IANA name; Windows calls it "
     "'W. Europe Standard Time'"),
    ("timezone", "W Europe Standard Time",
     "windows.timezone: 'W Europe Standard Time' is not a Windows time zone (did you mean "
     "'W. Europe Standard Time'"),
    ("timezone", "CET", "windows.timezone: 'CET' is an IANA name"),
    ("input_locale", "0407:0407", "windows.input_locale: '0407:0407': not Windows input"),
])
def test_locale_and_timezone_are_checked_against_windows_lists(field: str, value: str,
                                                               message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_url_msi(BASE).replace("iso_image: win.iso",
                                          f"iso_image: win.iso\n  {field}: '{value}'"))
    assert any(message in line for line in info.value.lines()), info.value.lines()


def _url_msi(text: str) -> str:
    return text.replace("msi: CloudbaseInitSetup_x64.msi",
                        "msi: https://example.invalid/cbi.msi\n  sha256: " + "a" * 64)


def test_the_guest_agent_without_its_serial_driver_is_refused(spec_dir: Path) -> None:
    # qemu-ga talks over virtio-serial; without vioserial it runs and never answers.
    text = edit("iso_image: virtio-win.iso",
                "iso_image: virtio-win.iso\n  guest_tools: false\n  qemu_ga: true")
    [problem] = problems(spec_dir, text)
    assert problem.endswith(
        f"spec.yaml: line {line_of(text, 'qemu_ga:')}: virtio.qemu_ga: the QEMU guest agent "
        "needs the vioserial driver; set virtio.guest_tools: true (installs it) or add "
        "vioserial to virtio.winpe_drivers")
    # WinPE's drivers land in the installed system's driver store: that is enough
    load(spec_dir, edit("iso_image: virtio-win.iso",
                        "iso_image: virtio-win.iso\n  guest_tools: false\n  qemu_ga: true\n"
                        "  winpe_drivers: [viostor, vioscsi, NetKVM, vioserial]"))
    load(spec_dir, edit("iso_image: virtio-win.iso",
                        "iso_image: virtio-win.iso\n  guest_tools: false\n  qemu_ga: false"))


def test_validate_exits_2_naming_the_guest_agent_field(spec_dir: Path, capsys) -> None:
    from osbuild.cli import main

    path = spec_dir / "spec.yaml"
    path.write_text(edit("iso_image: virtio-win.iso",
                         "iso_image: virtio-win.iso\n  guest_tools: false"), encoding="utf-8")
    assert main(["validate", str(path)]) == EXIT_INVALID_INPUT
    assert "virtio.qemu_ga: the QEMU guest agent needs the vioserial driver" in (
        capsys.readouterr().err)


def test_hygiene_defaults_and_reset_base(spec_dir: Path) -> None:
    hygiene = load(spec_dir, BASE).hygiene
    assert (hygiene.component_cleanup, hygiene.reset_base, hygiene.wu_cache, hygiene.pagefile,
            hygiene.hiberfile, hygiene.zero_free_space) == (True, False, True, True, True, True)
    text = BASE + "hygiene:\n  component_cleanup: false\n  reset_base: true\n"
    [problem] = problems(spec_dir, text)
    assert problem.endswith("hygiene.reset_base: needs component_cleanup: true")


def test_an_image_smaller_than_its_disk_is_refused(spec_dir: Path) -> None:
    # The capture keeps the disk's 40 GB: Cinder refuses a boot volume smaller than the
    # image's virtual size whatever min_disk says (cinder/volume/volume_utils.py
    # check_image_metadata), so every boot test of such an image failed.
    text = edit("image:\n", "image:\n  min_disk: 30\n")
    [line] = problems(spec_dir, text)
    assert line.endswith("image.min_disk: 30 is less than builder.disk_gb (40), the image's "
                         "size: nothing could boot it in so little"), line
    assert load(spec_dir, edit("image:\n", "image:\n  min_disk: 60\n")).min_disk_gb == 60
    local = edit("builder:\n", "builder:\n  target: local\n", text)
    assert load(spec_dir, local).min_disk_gb == 30  # its size is the flavor's root disk


def test_a_disk_format_with_a_local_target_is_refused(spec_dir: Path) -> None:
    # Nova's createImage takes no format: the libvirt driver uploads in its own
    # snapshot_image_format, so the key would be ignored without a word.
    local = edit("builder:\n", "builder:\n  target: local\n")
    [line] = problems(spec_dir, edit("image:\n", "image:\n  disk_format: raw\n", local))
    assert line.endswith("image.disk_format: raw cannot apply to a local target, whose image "
                         "is Nova's snapshot of the builder in the format the cloud's Nova "
                         "sets (qcow2 by default); remove the key, or use builder.target: "
                         "volume"), line
    assert load(spec_dir, local).image.disk_format == "qcow2"
    # Nova's default, and what the family's refreshes (volume uploads) ask for.
    explicit = edit("image:\n", "image:\n  disk_format: qcow2\n", local)
    assert load(spec_dir, explicit).image.disk_format == "qcow2"
    volume = edit("image:\n", "image:\n  disk_format: raw\n")
    assert load(spec_dir, volume).image.disk_format == "raw"


def test_every_bad_image_property_is_its_own_problem(spec_dir: Path) -> None:
    # One line for the first kind of bad key only: the Glance field showed once the
    # reserved one was gone, and two reserved keys shared a line.
    text = edit("image:\n", "image:\n  properties:\n    osbuild_x: '1'\n    os_hidden: 'true'\n"
                "    hw_rng_model: virtio\n    osbuild_y: '2'\n")
    lines = problems(spec_dir, text)
    assert [line.split(": ", 3)[2:] for line in lines] == [
        ["image.properties.osbuild_x", "the osbuild_ prefix is osbuild's own"],
        ["image.properties.os_hidden", "Glance's own field, not a property (name, visibility, "
                                       "tags, min_disk, min_ram are image.* keys)"],
        ["image.properties.osbuild_y", "the osbuild_ prefix is osbuild's own"],
    ], lines


def test_a_script_must_be_a_powershell_file(spec_dir: Path) -> None:
    (spec_dir / "tools").mkdir()
    (spec_dir / "setup.sh").write_text("#!/bin/sh\n")
    (spec_dir / "Setup.PS1").write_text("Write-Output ok\n")
    text = BASE + "scripts:\n  - tools\n  - setup.sh\n  - Setup.PS1\n"
    assert [line.split(": ", 3)[2:] for line in problems(spec_dir, text)] == [
        ["scripts[0]", f"a directory, not a file: {spec_dir / 'tools'}"],
        ["scripts[1]", f"not a PowerShell script (.ps1): {spec_dir / 'setup.sh'}"],
    ]
