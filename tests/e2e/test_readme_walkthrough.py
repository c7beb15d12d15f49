"""The README's by-hand walk-through of the simulated cloud works as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _walkthrough() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("Try the tool by hand:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.rstrip("&").strip())
            for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_walkthrough_builds_an_image(tmp_path: Path) -> None:
    """As written (the cloud's pace reaches osbuild through clouds.yaml), then `images` and
    `gc` against the same cloud, also unmodified."""
    serve, build, curl = _walkthrough()
    assert "--speed" not in serve and "--time-scale" not in build
    assert serve[:3] == ["osbuild", "sim", "serve"] and "--msi" in serve
    assert build[0].startswith("OS_CLIENT_CONFIG_FILE=") and build[1:3] == ["osbuild", "build"]
    assert curl[0] == "curl"
    # The same commands, in a scratch copy of the repository's etc/ and a free port.
    shutil.copytree(ROOT / "etc", tmp_path / "etc")
    port = str(_free_port())
    clouds = str(tmp_path / "clouds.yaml")

    def local(argv: list[str]) -> list[str]:
        return [clouds if a == "/tmp/clouds.yaml" else port if a == "5000" else a
                for a in argv]

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    served = local(serve)
    proc = subprocess.Popen([sys.executable, "-m", *served], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready ")
        variable, value = build[0].split("=", 1)
        result = subprocess.run(
            [sys.executable, "-m", *local(build[1:])], cwd=tmp_path,
            env={**env, variable: clouds if value == "/tmp/clouds.yaml" else value},
            capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        # Hours at the sim's pace; 7230 s reads "2h30s" (format_duration drops a zero unit).
        assert re.search(r"ws2022-standard in osbuild-sim: built image \S+ \(\S+\) in "
                         r"\d+h(?:\d+m)?(?:\d+s)?\b", result.stdout), result.stdout
        url = re.sub(r"^localhost:5000", f"http://127.0.0.1:{port}", curl[2])
        resources = requests.get(url, timeout=10).json()
        assert json.dumps(resources)
        images = [i for i in resources["images"] if not i.get("seeded")]
        assert [i["name"] for i in images] == [re.search(r"built image (\S+)",
                                                         result.stdout)[1]]
        cloud_env = {**env, "OS_CLIENT_CONFIG_FILE": clouds}
        listed = subprocess.run(
            [sys.executable, "-m", "osbuild", "images", "--family", "ws2022-standard",
             "--os-cloud", "osbuild-sim", "--json"],
            cwd=tmp_path, env=cloud_env, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr[-3000:]
        assert images[0]["id"] in listed.stdout
        collected = subprocess.run(
            [sys.executable, "-m", "osbuild", "gc", "--older-than", "0", "--os-cloud",
             "osbuild-sim"], cwd=tmp_path, env=cloud_env, capture_output=True, text=True,
            timeout=60)
        assert collected.returncode == 0, collected.stderr[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
