"""Input errors are one line each and exit 2, never a traceback (through the real CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuild import resources
from osbuild.cli import main
from osbuild.errors import EXIT_INVALID_INPUT


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME", "OS_TOKEN",
                "OS_CLIENT_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no clouds.yaml in the working directory
    path = tmp_path / "ws2022-standard.yaml"
    path.write_text((resources.examples_dir() / "ws2022-standard.yaml").read_text())
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    return path


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    assert line.startswith("osbuild: error: "), line
    return line


def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def test_a_cloud_without_a_password(spec: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    clouds_yaml(tmp_path, monkeypatch, yaml.safe_dump({"clouds": {"nopw": {"auth": {
        "auth_url": "http://127.0.0.1:9/v3", "username": "ops", "project_name": "p",
        "user_domain_name": "Default", "project_domain_name": "Default"}}}}))
    assert main(["build", str(spec), "--os-cloud", "nopw"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert "nopw" in line and "password" in line


def test_clouds_written_as_a_list(spec: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = clouds_yaml(tmp_path, monkeypatch,
                       "clouds:\n  - name: east\n    auth: {password: s3cret-value}\n")
    assert main(["build", str(spec), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert str(path) in line and "clouds: must be a mapping" in line
    assert "s3cret-value" not in line


def test_clouds_yaml_that_is_not_yaml(spec: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = clouds_yaml(tmp_path, monkeypatch,
                       "clouds:\n  east:\n    auth: {password: [s3cret-value\n")
    assert main(["build", str(spec), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert str(path) in line and "not valid YAML" in line and "line " in line
    assert "was not found" not in line and "s3cret-value" not in line


def test_os_client_config_file_that_does_not_exist(spec: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys) -> None:
    missing = tmp_path / "nope" / "clouds.yaml"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(missing))
    assert main(["build", str(spec), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert "OS_CLIENT_CONFIG_FILE" in line and str(missing) in line
    assert "was not found" not in line


@pytest.mark.parametrize("name", ["nope.yaml", "nope", "ABSOLUTE"])
def test_demo_spec_that_is_not_an_example(spec: Path, capsys, name: str) -> None:
    if name == "ABSOLUTE":
        name = str(spec)
    assert main(["demo", "--spec", name]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert "--spec" in line and "ws2022-standard.yaml" in line


def test_render_output_that_is_a_file(spec: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("")
    assert main(["render", str(spec), "-o", str(target)]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert str(target) in line and "not a directory" in line


def test_sim_serve_clouds_yaml_in_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "clouds.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "osbuild", "sim", "serve", "--clouds-yaml", str(path)],
        capture_output=True, text=True, timeout=20)
    assert proc.returncode == EXIT_INVALID_INPUT, proc.stderr
    [line] = proc.stderr.splitlines()
    assert "--clouds-yaml" in line and str(path.parent) in line
    assert not path.parent.exists()


def test_a_cloud_that_clouds_yaml_does_not_name(spec: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys) -> None:
    # openstacksdk says only "Cloud prod was not found.": which file, and what is in it?
    path = clouds_yaml(tmp_path, monkeypatch, yaml.safe_dump({"clouds": {
        name: {"auth": {"auth_url": "http://127.0.0.1:9/v3", "password": "s3cret-value"}}
        for name in ("west", "east")}}))
    assert main(["build", str(spec), "--os-cloud", "prod"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert line == f"osbuild: error: cloud prod: not in {path} (its clouds: east, west)"


def test_no_cloud_chosen_at_all_says_so_first(spec: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # It read "cloud configuration: Auth plugin requires parameters which were not given:
    # auth_url (no cloud chosen: ...)", keystoneauth's consequence first (session 28).
    from openstack.config import loader

    monkeypatch.setattr(loader, "CONFIG_FILES", [str(tmp_path / "none" / "clouds.yaml")])
    assert main(["validate", str(spec), "--preflight"]) == EXIT_INVALID_INPUT
    assert one_error(capsys) == ("osbuild: error: no cloud chosen: pass --os-cloud NAME for an "
                                 "entry of clouds.yaml, or set OS_CLOUD or the OS_* variables")


def test_a_cloud_named_with_no_clouds_yaml_anywhere(spec: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys) -> None:
    from openstack.config import loader

    monkeypatch.setattr(loader, "CONFIG_FILES", [str(tmp_path / "none" / "clouds.yaml")])
    assert main(["build", str(spec), "--os-cloud", "prod"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert line.startswith("osbuild: error: cloud prod: no clouds.yaml found"), line
    assert "OS_CLIENT_CONFIG_FILE" in line


@pytest.mark.parametrize(("host", "why"), [("127.0.0.1:9", "connection refused"),
                                           ("no-such-host.invalid", "")])  # resolver's words
def test_an_identity_service_that_cannot_be_reached(spec: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys, host: str, why: str) -> None:
    # keystoneauth's message is a paragraph around urllib3's repr of the error: say where
    # and why in a few words.
    clouds_yaml(tmp_path, monkeypatch, yaml.safe_dump({"clouds": {"east": {"auth": {
        "auth_url": f"http://ops:s3cret-value@{host}/v3", "username": "ops",
        "password": "s3cret-value", "project_name": "p", "user_domain_name": "Default",
        "project_domain_name": "Default"}}}}))
    assert main(["build", str(spec), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert line.startswith(f"osbuild: error: east: cannot reach the identity service at "
                           f"http://{host}/v3: {why}"), line
    assert "HTTPConnectionPool" not in line and "s3cret-value" not in line


@pytest.mark.parametrize("flag", ["--log-dir", "--state-dir"])
def test_a_folder_that_cannot_be_made(spec: Path, tmp_path: Path, capsys, flag: str) -> None:
    # Once a traceback (NotADirectoryError, exit 1), the log folder's only after preflight.
    afile = tmp_path / "afile"
    afile.write_text("")
    # (the default log folder is in the state folder: give it one of its own)
    logs = ["--log-dir", str(tmp_path / "logs")] if flag == "--state-dir" else []
    assert main(["build", str(spec), "--os-cloud", "east", flag, str(afile / "sub"), *logs]) \
        == EXIT_INVALID_INPUT
    assert one_error(capsys) == (f"osbuild: error: {flag} {afile / 'sub'}: cannot create it: "
                                 "Not a directory")


@pytest.mark.parametrize(("where", "why"), [
    ("afile/sub/m.prom", "cannot create its folder: Not a directory"),
    ("folder", "is a folder, not a file")])
def test_a_metrics_file_that_cannot_be_written(spec: Path, tmp_path: Path, fast_sim: Any,
                                               monkeypatch: pytest.MonkeyPatch, capsys,
                                               where: str, why: str) -> None:
    # Tried from outside: the build ran to the end (exit 0) and only then warned "could not
    # write ...": a cron run's metrics silently missing, found when the alert fires a week on.
    # (At demo speed: without the check the build would run, and this test fail.)
    sim = fast_sim
    _sim_cloud(sim, tmp_path, monkeypatch)
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    before = {k: v for k, v in sim.resources().items() if k != "now"}
    metrics = tmp_path / where
    assert main(["build", str(spec), "--os-cloud", "east", "--metrics-file", str(metrics)]) \
        == EXIT_INVALID_INPUT
    assert one_error(capsys) == f"osbuild: error: --metrics-file {metrics}: {why}"
    assert {k: v for k, v in sim.resources().items() if k != "now"} == before


def test_wait_lock_before_the_specs_says_how_to_write_it(spec: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    # README writes `osbuild build [--wait-lock [DURATION]] ... SPEC...`; a crontab line in
    # that order (`--wait-lock /etc/osbuild/builds/*.yaml`) gave the first spec to
    # --wait-lock: "'...ws2022.yaml' is not a duration", and nothing said what to change.
    assert main(["build", "--wait-lock", str(spec), str(spec)]) == EXIT_INVALID_INPUT
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(f"argument --wait-lock: {str(spec)!r} is a file, not a DURATION: give "
                         "one (--wait-lock 6h) or put --wait-lock after the specs")


@pytest.mark.parametrize("argv,option", [
    (["build", "--wait-lock", "-1h", "{spec}"], "argument --wait-lock"),
    (["gc", "--older-than", "-2h"], "argument --older-than"),
    (["images", "prune", "--family", "x", "--max-age", "-1d"], "--max-age"),
])
def test_a_negative_duration_is_refused_by_its_option(spec: Path, argv: list[str], option: str,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    # argparse took "-1h" for an option of its own: "unrecognized arguments: -1h", naming
    # neither the option nor what a duration is. (No cloud is configured: images prune
    # refuses before it connects.)
    words = [w.replace("{spec}", str(spec)) for w in argv]
    assert main(words) == EXIT_INVALID_INPUT
    value = next(w for w in words if w.startswith("-") and w[1:2].isdigit())
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unrecognized" not in err
    assert err.splitlines()[-1].endswith(
        f"{option}: {value!r} is not a duration like 90m, 4h or 1h30m")


def _sim_cloud(sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               **changes: Any) -> dict[str, Any]:
    entry = {**sim.cloud_config(), **changes}
    clouds_yaml(tmp_path, monkeypatch, yaml.safe_dump({"clouds": {"east": entry}}))
    return entry


@pytest.mark.parametrize("argv", [["build", "{spec}", "--os-cloud", "east"],
                                  ["gc", "--os-cloud", "east", "--dry-run"],
                                  ["status", "--os-cloud", "east"]])
def test_a_region_the_cloud_does_not_have(spec: Path, tmp_path: Path, sim: Any,
                                          monkeypatch: pytest.MonkeyPatch, capsys,
                                          argv: list[str]) -> None:
    # Tried from outside: `region_name: RegionSeven` (a typo, or another cloud's region)
    # authenticated, then died on the first compute call with exit 1 and openstacksdk's
    # paragraph ("osbuild: error: cloud: Service 'compute' is disabled because ...").
    _sim_cloud(sim, tmp_path, monkeypatch, region_name="RegionSeven")
    before = {k: v for k, v in sim.resources().items() if k != "now"}
    assert main([arg.format(spec=spec) for arg in argv]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert line == ("osbuild: error: east: no public endpoint for compute, block-storage, "
                    "image, network in region 'RegionSeven' of the service catalog "
                    "(region_name, interface in clouds.yaml or OS_REGION_NAME, "
                    "--os-region-name); its catalog has regions: RegionOne")
    assert {k: v for k, v in sim.resources().items() if k != "now"} == before


def test_an_auth_type_that_is_no_plugin(spec: Path, tmp_path: Path, sim: Any,
                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # Was exit 1 with keystoneauth's "cloud: The plugin pasword could not be found".
    entry = _sim_cloud(sim, tmp_path, monkeypatch, auth_type="pasword")
    assert main(["build", str(spec), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    line = one_error(capsys)
    assert line == ("osbuild: error: east: auth_type 'pasword' is not a keystoneauth plugin "
                    "(password, v3applicationcredential, token, ...)")
    assert entry["auth"]["password"] not in line


def test_two_specs_of_one_family_in_one_cloud(spec: Path, tmp_path: Path, fast_sim: Any,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys) -> None:
    # Tried from outside: a spec copied to try another flavor, its `name` left as it was.
    # Both built, one after the other, each publishing over the other's image (and with
    # --if-changed the family would look changed on every run). Refused, naming both files.
    # (At demo speed: without the check the two builds would run, and this test fail.)
    sim = fast_sim
    _sim_cloud(sim, tmp_path, monkeypatch)
    copy = tmp_path / "ws2022-xlarge.yaml"
    copy.write_text(spec.read_text().replace("m1.large", "m1.xlarge"))
    before = {k: v for k, v in sim.resources().items() if k != "now"}
    assert main(["build", str(spec), str(copy), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    assert one_error(capsys) == (
        f"osbuild: error: ws2022-standard in east: name: ws2022-standard in 2 specs ({spec}, "
        f"{copy}); a family is built from one spec: give each its own name")
    assert {k: v for k, v in sim.resources().items() if k != "now"} == before


def test_one_family_in_two_clouds_from_two_specs_is_fine(spec: Path) -> None:
    from osbuild.spec import load_spec
    from osbuild.unattended.jobs import plan_jobs, shared_families

    first = load_spec(spec)
    other = first.model_copy(update={"source_path": spec.with_name("copy.yaml")})
    assert shared_families(plan_jobs(specs=[first.model_copy(update={"clouds": ("east",)}),
                                            other.model_copy(update={"clouds": ("west",)})],
                                     clouds=None)) == []
    assert shared_families(plan_jobs(specs=[first], clouds=["east", "west"])) == []
    # The same file twice (`build a.yaml a.yaml`, overlapping globs) builds it twice in turn.
    assert shared_families(plan_jobs(specs=[first, first], clouds=["east", "west"])) == [
        f"ws2022-standard in east: {spec} is given 2 times",
        f"ws2022-standard in west: {spec} is given 2 times"]
    assert len(shared_families(plan_jobs(specs=[first, other], clouds=["east", "west"]))) == 2


@pytest.mark.parametrize("url", ["127.0.0.1:5000/v3", "keystone.example.com/v3",
                                 "ftp://keystone.example.com/v3"])
def test_an_auth_url_without_a_scheme(spec: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys, url: str) -> None:
    # Was "east: authentication failed: Could not find requested endpoint in Service Catalog."
    clouds_yaml(tmp_path, monkeypatch, yaml.safe_dump({"clouds": {"east": {"auth": {
        "auth_url": url, "username": "ops", "password": "s3cret-value", "project_name": "p",
        "user_domain_name": "Default", "project_domain_name": "Default"}}}}))
    assert main(["build", str(spec), "--os-cloud", "east"]) == EXIT_INVALID_INPUT
    assert one_error(capsys) == ("osbuild: error: east: auth_url must be an http:// or "
                                 "https:// URL (the identity service's, e.g. "
                                 "https://keystone.example.com:5000/v3)")
