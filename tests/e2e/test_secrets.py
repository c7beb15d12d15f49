"""No secret leaves a build: a guest that prints the Windows password and the product key
on its console, and fails with the password in its reason, as a real `osbuild build`
process, or after `osbuild resume` (the password is never stored: the resume reads it back);
and credentials quoted by an auth failure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session

from osbuild.cli import main
from osbuild.media import layout
from osbuild.media.render import TREE_DIR, rendered_passwords
from osbuild.media.unattend import obfuscate
from osbuild.pipeline.recover_password import UNRECOVERED
from osbuild.pipeline.steps.upload_config_iso import CONFIG_IMAGE
from osbuild.redact import REDACTED
from osbuild.unattended.state import StateStore
from osbuild_sim.guest import GuestScenario
from tests.e2e.conftest import Cloud
from tests.support.cliprocess import interrupt_when

PRODUCT_KEY = "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"
MESSAGE = "could not log on as {password} with key {product_key}"


def _argv(cloud: Cloud, spec: Path, *, debug: bool = False, json_output: bool = False,
          state: bool = False) -> list[str]:
    return [sys.executable, "-m", "osbuild", *(["--debug"] if debug else []), "build", str(spec),
            "--os-cloud", cloud.sim.cloud_name, "--log-dir", str(cloud.log_dir),
            *(["--state-dir", str(_state_dir(cloud))] if state else []),
            *(["--json"] if json_output else [])]


def _env(cloud: Cloud) -> dict[str, str]:
    return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}


def _state_dir(cloud: Cloud) -> Path:
    return cloud.workdir / "state"


def _osbuild(cloud: Cloud, spec: Path, *, debug: bool = False,
             json_output: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(cloud, spec, debug=debug, json_output=json_output),
                          capture_output=True, text=True, env=_env(cloud), timeout=600,
                          check=False)


def _written(cloud: Cloud) -> dict[Path, str]:
    """Every file the builds wrote (the inputs, which hold secrets by design, left out)."""
    inputs = {cloud.clouds_yaml, *cloud.workdir.glob("*.yaml"), *cloud.workdir.glob("*.msi")}
    return {path: path.read_bytes().decode("utf-8", "replace")
            for path in cloud.workdir.rglob("*") if path.is_file() and path not in inputs}


@pytest.mark.slow
def test_a_guest_printing_secrets_leaks_them_nowhere(cloud: Cloud) -> None:
    scenario = GuestScenario(fail_stage="winpe", fail_message=MESSAGE, echo_secrets=True)
    cloud.sim.faults.add_guest_scenario(scenario, name="builder$")
    spec = cloud.spec(windows={"product_key": PRODUCT_KEY})
    as_json = _osbuild(cloud, spec, json_output=True)
    human = _osbuild(cloud, spec, debug=True)  # --debug: log lines and tracebacks too
    assert (as_json.returncode, human.returncode) == (1, 1), as_json.stderr + human.stderr

    # The guest did print them: two builds, two random passwords, the same key.
    passwords = {v for v in scenario.revealed if v != PRODUCT_KEY}
    assert len(passwords) == 2 and PRODUCT_KEY in scenario.revealed
    secrets = [PRODUCT_KEY, cloud.sim.password, *passwords,
               *(obfuscate(p, "Password") for p in passwords)]
    folders = _assert_nowhere(cloud, secrets, {
        "--json stdout": as_json.stdout, "--json stderr": as_json.stderr,
        "human stdout": human.stdout, "human stderr": human.stderr})
    assert len(folders) == 2
    _assert_marked(folders, as_json.stdout, human.stderr)
    assert cloud.leftovers() == []


def _assert_nowhere(cloud: Cloud, secrets: list[str], streams: dict[str, str]) -> set[Path]:
    """No secret in ``streams`` or any file the builds wrote; the builds' log folders."""
    files = _written(cloud)
    names = {path.name for path in files}
    assert {"console.log", "report.json", "report.html"} <= names
    assert any(path.suffix == ".json" and "state" in path.parts for path in files)
    outputs = {**streams,
               **{str(path.relative_to(cloud.workdir)): text for path, text in files.items()}}
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {where}"
    return {path.parent for path in files if path.name == "console.log"}


def _assert_marked(folders: set[Path], json_stdout: str, stderr: str) -> None:
    """The marks are where the secrets were: the failure, the console, both reports."""
    reason = f"could not log on as {REDACTED} with key {REDACTED}"
    [failed] = [json.loads(line) for line in json_stdout.splitlines()
                if json.loads(line)["event"] == "build.failed"]
    assert reason in failed["reason"]
    assert reason in stderr
    for folder in folders:
        console = (folder / "console.log").read_text()
        assert f"slmgr.vbs /ipk {REDACTED}" in console
        assert f"cmdkey /pass:{REDACTED}" in console
        assert f"<Value>{REDACTED}</Value>" in console
        assert reason in console
        report = json.loads((folder / "report.json").read_text())
        assert any(reason in line for line in report["error"])
        assert reason in (folder / "report.html").read_text()


def _killed_while_installing(cloud: Cloud, spec: Path) -> str:
    """A build SIGKILLed as Setup starts (as tests/cron/test_resume.py does): its state,
    rendered media, config image and builder are left for `osbuild resume`."""
    proc = subprocess.Popen(_argv(cloud, spec, json_output=True, state=True),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(cloud))
    events, _ = interrupt_when(
        proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe" and e["status"] == "start",
        signal.SIGKILL, exit_timeout=30)
    assert proc.returncode == -signal.SIGKILL
    build_id = str(events[0]["build_id"])
    assert (cloud.log_dir / build_id / "media" / TREE_DIR / layout.ANSWER_FILE).is_file()
    return build_id


def _resume(cloud: Cloud, build_id: str) -> subprocess.CompletedProcess[str]:
    # --debug: log lines and tracebacks too; --json: the events as they were sent.
    return subprocess.run(
        [sys.executable, "-m", "osbuild", "--debug", "resume", build_id,
         "--state-dir", str(_state_dir(cloud)), "--json"],
        capture_output=True, text=True, env=_env(cloud), timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["work dir", "config image"])
def test_a_resumed_build_redacts_the_password_its_guest_prints(cloud: Cloud,
                                                               source: str) -> None:
    """The password is in no state file: the resume reads it from the media the dead run
    left in its work dir or, with those gone, from the config ISO it uploaded to Glance."""
    # First logon comes well after the kill at winpe (Setup's two passes): the resumed run
    # is the one that reads what the guest prints.
    scenario = GuestScenario(fail_stage="firstlogon", fail_message=MESSAGE, echo_secrets=True)
    cloud.sim.faults.add_guest_scenario(scenario, name="builder$")
    build_id = _killed_while_installing(cloud, cloud.spec(windows={"product_key": PRODUCT_KEY}))
    media = cloud.log_dir / build_id / "media"
    if source == "config image":
        shutil.rmtree(media)
    resumed = _resume(cloud, build_id)
    assert resumed.returncode == 1, resumed.stderr

    [password] = {v for v in scenario.revealed if v != PRODUCT_KEY}
    secrets = [PRODUCT_KEY, cloud.sim.password, password, obfuscate(password, "Password"),
               obfuscate(password, "AdministratorPassword")]
    folders = _assert_nowhere(cloud, secrets, {"stdout": resumed.stdout,
                                               "stderr": resumed.stderr})
    assert folders == {cloud.log_dir / build_id}
    _assert_marked(folders, resumed.stdout, resumed.stderr)
    # The answer file was read as it was (no copy of it left behind), then removed.
    assert not media.exists()
    assert [p for p in cloud.workdir.rglob("*.iso")] == []
    assert "net user Administrator " + REDACTED in (folders.pop() / "console.log").read_text()
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert not [e for e in events if e["event"] == "warning" and "password" in e["message"]]
    assert cloud.leftovers() == []


@pytest.mark.slow
def test_a_resume_with_no_copy_of_the_password_left_warns_once(cloud: Cloud) -> None:
    build_id = _killed_while_installing(cloud, cloud.spec())
    media = cloud.log_dir / build_id / "media"
    [password] = rendered_passwords(media) or ()
    shutil.rmtree(media)
    config_image = StateStore(_state_dir(cloud)).load(build_id).resources[CONFIG_IMAGE]
    cloud.sim.connect().image.delete_image(config_image)

    resumed = _resume(cloud, build_id)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert warnings.count(UNRECOVERED) == 1, warnings
    [done] = [e for e in events if e["event"] == "build.succeeded"]
    for secret in (password, obfuscate(password, "AdministratorPassword")):
        assert secret not in resumed.stdout + resumed.stderr
    assert cloud.leftovers(keep={done["image_id"]}) == []


@pytest.mark.parametrize("application_credential", [False, True])
def test_credentials_quoted_by_an_auth_failure_are_redacted(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        application_credential: bool) -> None:
    """Whatever an identity service (or a proxy before it) quotes back, the configured
    password or application credential secret never reaches the terminal."""
    cloud.sim.write_clouds_yaml(cloud.clouds_yaml,
                                application_credential=application_credential)
    config = cloud.sim.cloud_config(application_credential=application_credential)["auth"]
    secret = config["application_credential_secret" if application_credential else "password"]

    def quoting(*_args: object, **_kwargs: object) -> str:
        raise ksa_exc.BadRequest(f"could not validate {secret!r} for this user")

    monkeypatch.setattr(ksa_session.Session, "get_token", quoting)
    code = main(["build", str(cloud.spec()), "--os-cloud", cloud.sim.cloud_name])
    err = capsys.readouterr().err
    assert code == 2
    assert secret not in err
    assert f"authentication failed: could not validate '{REDACTED}' for this user" in err
