"""Whoever reads the output goes away mid-build (`| head`, a restarted log shipper): the build
goes on, and deletes what it made, without it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import IO

import pytest

from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def _build(cloud: Cloud, *extra: str, stdout: int, stderr: int) -> subprocess.Popen[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
    return subprocess.Popen(
        [sys.executable, "-m", "osbuild", "build", str(cloud.spec()), "--os-cloud",
         cloud.sim.cloud_name, "--log-dir", str(cloud.log_dir), *extra],
        stdout=stdout, stderr=stderr, text=True, env=env)


def _read_then_close(stream: IO[str] | None, lines: int) -> None:
    assert stream is not None
    for _ in range(lines):
        assert stream.readline()
    stream.close()


def test_json_reader_gone_mid_install(cloud: Cloud) -> None:
    # Once the first event after the pipe closed raised BrokenPipeError: the build failed,
    # and its cleanup stopped at the first resource.deleted event (volumes, config image
    # left behind, the build's state still "running").
    proc = _build(cloud, "--json", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        _read_then_close(proc.stdout, 25)  # into the install step
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cloud.leftovers(keep=_images(cloud)) == []
    assert len(_images(cloud)) == 1  # the build went on to publish its image


def test_human_reader_gone_mid_install(cloud: Cloud) -> None:
    # rich answers a closed pipe with SystemExit(1), which no cleanup caught: the builder,
    # its volumes, the config image and the answer file on disk were all left.
    proc = _build(cloud, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _read_then_close(proc.stderr, 12)
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cloud.leftovers(keep=_images(cloud)) == []
    assert not list(cloud.log_dir.glob("*/media"))


def _images(cloud: Cloud) -> set[str]:
    return {i["id"] for i in cloud.sim.resources()["images"]
            if not i.get("seeded") and i.get("name", "").startswith("ws2022-std-")}
