"""`osbuild validate --preflight`: what `osbuild build` checks before creating anything,
against the cloud, as the operator runs it (the CLI as a subprocess, the simulated cloud over
HTTP); nothing is created and no lock is taken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osbuild.errors import EXIT_INVALID_INPUT, EXIT_OK
from tests.e2e.conftest import Cloud


def _validate(cloud: Cloud, *argv: str, cwd: Path | None = None
              ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
    return subprocess.run([sys.executable, "-m", "osbuild", "validate", *argv],
                          capture_output=True, text=True, env=env, timeout=120, check=False,
                          cwd=cwd)


def test_a_spec_the_cloud_can_build_is_ok_with_the_kind_of_build(cloud: Cloud) -> None:
    spec = cloud.spec()
    done = _validate(cloud, str(spec), "--os-cloud", cloud.sim.cloud_name)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout == (f"{spec}: ok in {cloud.sim.cloud_name} (ws2022-standard: a full "
                           "build; --refresh never)\n")
    # Named as typed, as a problem line names it.
    relative = _validate(cloud, spec.name, "--os-cloud", cloud.sim.cloud_name, cwd=spec.parent)
    assert relative.stdout.startswith(f"{spec.name}: ok in "), relative.stdout
    assert cloud.leftovers() == []  # nothing created: no claim, no config image
    assert not (cloud.workdir / "state" / "osbuild" / "locks").exists()  # no lock taken


def test_every_problem_of_every_build_is_named_and_nothing_is_created(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    good = cloud.spec("ws2019-core-local.yaml")
    bad = cloud.spec(builder={"flavor": "m1.nope"}, windows={"iso_image": "nope.iso"})
    # --preflight alone: the cloud from $OS_CLOUD, as `osbuild build` would take it
    monkeypatch.setenv("OS_CLOUD", cloud.sim.cloud_name)
    done = _validate(cloud, str(good), str(bad), "--preflight", "--refresh", "auto")
    assert done.returncode == EXIT_INVALID_INPUT
    assert done.stdout.startswith(f"{good}: ok in {cloud.sim.cloud_name} (ws2019-core: a "
                                  "full build; ")
    where = f"ws2022-standard in {cloud.sim.cloud_name}"
    errors = done.stderr.splitlines()
    assert f"osbuild: error: {where}: builder.flavor: no flavor 'm1.nope'" in errors
    assert any(line.startswith(f"osbuild: error: {where}: windows.iso_image: ")
               and "nope.iso" in line for line in errors), errors
    assert cloud.leftovers() == []


def test_the_builds_that_run_at_once_are_checked_against_the_quota_together(
        cloud: Cloud) -> None:
    # Each build alone fits in 6 volumes (the builder's 4); two at once (--parallel 2) do not.
    cloud.sim.faults.set_quota("volume", volumes=6)
    first, second = cloud.spec(), cloud.spec("ws2019-core-local.yaml")
    alone = _validate(cloud, str(first), str(second), "--os-cloud", cloud.sim.cloud_name)
    assert alone.returncode == EXIT_OK, alone.stderr
    together = _validate(cloud, str(first), str(second), "--os-cloud", cloud.sim.cloud_name,
                         "--parallel", "2")
    assert together.returncode == EXIT_INVALID_INPUT
    assert together.stderr.startswith(
        f"osbuild: error: {cloud.sim.cloud_name}: quota: block storage volumes: the 2 builds "
        "that run at once (--parallel 2, of ws2022-standard, ws2019-core) need ")


def test_offline_validation_never_reaches_for_a_cloud(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = cloud.spec()
    monkeypatch.setenv("OS_CLOUD", "no-such-cloud")
    done = _validate(cloud, str(spec))
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout == f"{spec}: ok (ws2022-standard: Windows Server 2022 SERVERSTANDARD)\n"
    refused = _validate(cloud, str(spec), "--preflight")
    assert refused.returncode == EXIT_INVALID_INPUT
    # The cloud OS_CLOUD names is not in clouds.yaml: said so, naming the variable (it read
    # "no cloud chosen: pass --os-cloud NAME ... or set OS_CLOUD", with OS_CLOUD set).
    assert refused.stderr == (f"osbuild: error: cloud no-such-cloud: not in "
                              f"{cloud.clouds_yaml} (its clouds: osbuild-sim, "
                              "osbuild-sim-admin) (from OS_CLOUD)\n")


def test_json_gives_every_build_checked_and_every_problem_in_one_object(
        cloud: Cloud) -> None:
    good = cloud.spec("ws2019-core-local.yaml")
    bad = cloud.spec(builder={"flavor": "m1.nope"})
    done = _validate(cloud, str(good), str(bad), "--os-cloud", cloud.sim.cloud_name, "--json")
    assert done.returncode == EXIT_INVALID_INPUT
    [line] = done.stdout.splitlines()  # one object on one line, nothing else on stdout
    result = json.loads(line)
    assert result["valid"] is False
    assert result["ok"] == [{"spec": str(good), "name": "ws2019-core",
                             "image_name": "Windows Server 2019 SERVERSTANDARDCORE",
                             "cloud": cloud.sim.cloud_name, "kind": "full",
                             "parent_image_id": None, "reason": "--refresh never"}]
    where = f"ws2022-standard in {cloud.sim.cloud_name}"
    assert result["problems"] == [f"{where}: builder.flavor: no flavor 'm1.nope'"]
    assert done.stderr == ""  # stdout is the one document (`--json 2>&1` too)
    assert cloud.leftovers() == []


def test_json_says_why_the_cloud_could_not_be_checked(cloud: Cloud) -> None:
    done = _validate(cloud, str(cloud.spec()), "--os-cloud", "no-such-cloud", "--json")
    assert done.returncode == EXIT_INVALID_INPUT
    result = json.loads(done.stdout)
    assert result["valid"] is False and result["ok"] == []
    [problem] = result["problems"]
    assert problem.startswith("cloud no-such-cloud: not in "), problem
    assert done.stderr == ""


def test_a_spec_invalid_offline_does_not_keep_the_others_from_the_cloud_check(
        cloud: Cloud) -> None:
    good = cloud.spec("ws2019-core-local.yaml")
    broken = cloud.spec()
    broken.write_text(broken.read_text().replace("edition:", "editon:"))
    done = _validate(cloud, str(broken), str(good), "--os-cloud", cloud.sim.cloud_name)
    assert done.returncode == EXIT_INVALID_INPUT
    # It printed only the broken spec's problem: the good one was never checked.
    assert done.stdout.startswith(f"{good}: ok in {cloud.sim.cloud_name} (ws2019-core: ")
    [problem] = done.stderr.splitlines()
    assert str(broken) in problem and "windows.editon: unknown key" in problem


def test_a_cloud_that_cannot_be_used_does_not_keep_the_others_from_the_check(
        cloud: Cloud) -> None:
    # Only the unknown cloud was reported; the one that answered was never checked.
    spec = cloud.spec(clouds=["nosuch", cloud.sim.cloud_name])
    done = _validate(cloud, str(spec), "--preflight")
    assert done.returncode == EXIT_INVALID_INPUT
    assert done.stdout == (f"{spec}: ok in {cloud.sim.cloud_name} (ws2022-standard: a full "
                           "build; --refresh never)\n")
    assert done.stderr.startswith("osbuild: error: cloud nosuch: not in "), done.stderr
    assert len(done.stderr.splitlines()) == 1
