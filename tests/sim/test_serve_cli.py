"""`osbuild sim serve` as a subprocess: ready line, clouds.yaml, serving, clean SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import openstack
import pytest
import requests

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    clouds = tmp_path / "clouds.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "osbuild", "sim", "serve", "--clouds-yaml", str(clouds),
         "--speed", "1000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_ready_serves_and_exits_0_on_signal(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    proc, line = _start(tmp_path)
    try:
        word, url = line.split(" ", 1)
        assert word == "ready"
        assert url.startswith("http://127.0.0.1:") and url.endswith("/identity/v3")
        clouds = tmp_path / "clouds.yaml"
        assert clouds.stat().st_mode & 0o777 == 0o600
        env_before = os.environ.get("OS_CLIENT_CONFIG_FILE")
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        try:
            conn = openstack.connect(cloud="osbuild-sim")
            assert conn.image.find_image("virtio-win.iso") is not None
        finally:
            if env_before is None:
                del os.environ["OS_CLIENT_CONFIG_FILE"]
            else:
                os.environ["OS_CLIENT_CONFIG_FILE"] = env_before
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=2)


def test_serve_loads_a_faults_file(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text("quotas:\n  compute: {instances: 1}\n")
    proc, line = _start(tmp_path, "--faults", str(faults))
    try:
        base = line.split(" ", 1)[1].rsplit("/identity", 1)[0]
        answer = requests.get(f"{base}/_sim/faults", timeout=10).json()
        assert answer["quotas"]["compute"]["instances"] == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_serve_with_a_bad_faults_file_exits_2(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text("nonsense: true\n")
    proc, line = _start(tmp_path, "--faults", str(faults))
    _, err = proc.communicate(timeout=30)
    assert line == ""
    assert proc.returncode == 2
    assert "unknown key 'nonsense'" in err


def test_serve_on_a_busy_port_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc, line = _start(tmp_path, "--port", str(port))
        _, err = proc.communicate(timeout=30)
    assert line == ""
    assert proc.returncode == 2
    # One line: werkzeug's own two ("Address already in use", "Port N is in use by
    # another program...") printed before it once came first.
    assert err.splitlines() == [f"osbuild: error: cannot serve on port {port}: cannot listen "
                                f"on 127.0.0.1:{port}: address already in use"]


def test_serve_merges_into_an_existing_clouds_yaml(tmp_path: Path) -> None:
    import yaml

    clouds = tmp_path / "clouds.yaml"
    prod = {"auth": {"auth_url": "https://keystone.example.com:5000/v3", "username": "ops"},
            "region_name": "RegionOne"}
    clouds.write_text("# our clouds\n" + yaml.safe_dump(
        {"clouds": {"prod": prod, "osbuild-sim": {"auth": {"auth_url": "http://old"}}}}))
    before = clouds.read_text()
    proc, line = _start(tmp_path)
    try:
        assert line.startswith("ready "), line
        doc = yaml.safe_load(clouds.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert doc["clouds"]["prod"] == prod
    assert doc["clouds"]["osbuild-sim"]["auth"]["auth_url"] == line.split(" ", 1)[1]
    assert clouds.stat().st_mode & 0o777 == 0o600
    # The file as it was (comments and all) is kept beside it.
    assert (tmp_path / "clouds.yaml.bak").read_text() == before


def test_serve_refuses_a_file_that_is_not_a_clouds_yaml(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("- just\n- a list\n")
    proc = subprocess.run(
        [sys.executable, "-m", "osbuild", "sim", "serve", "--clouds-yaml", str(clouds)],
        capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc.stderr
    [error] = proc.stderr.splitlines()
    assert str(clouds) in error and "not a clouds.yaml" in error
    assert clouds.read_text() == "- just\n- a list\n"


def test_serve_seeds_the_msi_the_example_specs_name(tmp_path: Path) -> None:
    msi = tmp_path / "CloudbaseInitSetup_x64.msi"
    proc, line = _start(tmp_path, "--msi", str(msi))
    try:
        assert line.startswith("ready ")
        assert proc.stdout is not None
        note = proc.stdout.readline()
        assert f"cloudbase-init MSI for the example specs: {msi}" in note
        assert "any file serves as the MSI" in note
        assert msi.is_file() and msi.stat().st_size > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    msi.write_bytes(b"mine")  # an existing file is left alone
    proc, _ = _start(tmp_path, "--msi", str(msi))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert msi.read_bytes() == b"mine"


def test_serve_without_msi_says_any_file_serves(tmp_path: Path) -> None:
    proc, _line = _start(tmp_path)
    try:
        assert proc.stdout is not None
        assert "any file serves as the cloudbase-init MSI" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
