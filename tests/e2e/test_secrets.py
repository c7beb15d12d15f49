"""No secret leaves a build: a guest that prints the Windows password and the product key
on its console, and fails with the password in its reason, as a real `osbuild build`
process; and credentials quoted by an auth failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session

from osbuild.cli import main
from osbuild.media.unattend import obfuscate
from osbuild.redact import REDACTED
from osbuild_sim.guest import GuestScenario
from tests.e2e.conftest import Cloud

PRODUCT_KEY = "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"
MESSAGE = "could not log on as {password} with key {product_key}"


def _osbuild(cloud: Cloud, spec: Path, *, debug: bool = False,
             json_output: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
    return subprocess.run(
        [sys.executable, "-m", "osbuild", *(["--debug"] if debug else []), "build", str(spec),
         "--os-cloud", cloud.sim.cloud_name, "--log-dir", str(cloud.log_dir),
         *(["--json"] if json_output else [])],
        capture_output=True, text=True, env=env, timeout=600, check=False)


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
    files = _written(cloud)
    names = {path.name for path in files}
    assert {"console.log", "report.json", "report.html"} <= names
    assert any(path.suffix == ".json" and "state" in path.parts for path in files)
    outputs = {"--json stdout": as_json.stdout, "--json stderr": as_json.stderr,
               "human stdout": human.stdout, "human stderr": human.stderr,
               **{str(path.relative_to(cloud.workdir)): text for path, text in files.items()}}
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {where}"

    # ... and the marks are where they were.
    reason = f"could not log on as {REDACTED} with key {REDACTED}"
    [failed] = [json.loads(line) for line in as_json.stdout.splitlines()
                if json.loads(line)["event"] == "build.failed"]
    assert reason in failed["reason"]
    assert reason in human.stderr
    for folder in {path.parent for path in files if path.name == "console.log"}:
        console = (folder / "console.log").read_text()
        assert f"slmgr.vbs /ipk {REDACTED}" in console
        assert f"cmdkey /pass:{REDACTED}" in console
        assert f"<Value>{REDACTED}</Value>" in console
        assert reason in console
        report = json.loads((folder / "report.json").read_text())
        assert any(reason in line for line in report["error"])
        assert reason in (folder / "report.html").read_text()
    assert cloud.leftovers() == []


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
