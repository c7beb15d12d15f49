"""The scheduling examples in etc/ and the Containerfile: well-formed, and every osbuild
command line in them is accepted by the real argument parser."""

from __future__ import annotations

import contextlib
import io
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from osbuild.cli import build_parser
from osbuild.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "etc" / "systemd"

def _accepted(argv: list[str]) -> bool:
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            return False
    return True


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit: sections of key -> values, with backslash continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _osbuild_argv(command: str) -> list[str]:
    words = shlex.split(command.split(">>")[0])
    start = next(i for i, w in enumerate(words) if w.endswith("osbuild"))
    return [w.replace("%i", "ws2022") for w in words[start + 1 :]]


def test_service_exit_codes_and_stop_handling() -> None:
    service = _unit(SYSTEMD / "osbuild@.service")["Service"]
    # 130 (a deliberate stop after cleanup) is success; 1, 2 and 3 must fail the unit.
    assert service["SuccessExitStatus"] == ["130"]
    assert service["KillMode"] == ["mixed"]
    assert "RuntimeMaxSec" not in service
    assert service["User"] == ["osbuild"]


def test_gc_service_command_parses() -> None:
    argv = _osbuild_argv(_unit(SYSTEMD / "osbuild-gc.service")["Service"]["ExecStart"][0])
    assert argv[0] == "gc" and _accepted(argv)


def test_build_service_command_parses() -> None:
    argv = _osbuild_argv(_unit(SYSTEMD / "osbuild@.service")["Service"]["ExecStart"][0])
    assert _accepted(argv)


def test_timers_are_persistent_and_spread() -> None:
    for name in ("osbuild@.timer", "osbuild-gc.timer"):
        timer = _unit(SYSTEMD / name)["Timer"]
        assert timer["Persistent"] == ["true"] and "RandomizedDelaySec" in timer


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    osbuild = shutil.which("osbuild") or "/bin/true"
    for path in SYSTEMD.iterdir():
        text = path.read_text().replace("/usr/local/bin/osbuild", osbuild)
        name = path.name.replace("@.", "@ws2022.")
        (tmp_path / name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if str(tmp_path) in line]
    assert problems == []


def _cron_jobs() -> list[str]:
    lines = (ROOT / "etc" / "cron" / "osbuild.crontab").read_text().splitlines()
    return [line for line in lines
            if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]


def test_crontab_has_no_flock_and_gc_parses() -> None:
    jobs = _cron_jobs()
    assert len(jobs) == 2
    assert all("flock" not in job for job in jobs)
    for job in jobs:
        assert len(job.split()[:5]) == 5  # five time fields
    gc = [_osbuild_argv(" ".join(job.split()[5:])) for job in jobs if " gc " in job]
    assert gc and all(_accepted(argv) for argv in gc)


def test_crontab_build_parses() -> None:
    build = [_osbuild_argv(" ".join(j.split()[5:])) for j in _cron_jobs() if " build " in j]
    assert build and all(_accepted(argv) for argv in build)


def _k8s() -> list[dict]:
    return list(yaml.safe_load_all((ROOT / "etc" / "kubernetes" / "cronjob.yaml").read_text()))


def test_cronjobs_forbid_overlap_and_mount_secret_and_state() -> None:
    docs = _k8s()
    cronjobs = [d for d in docs if d["kind"] == "CronJob"]
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert len(cronjobs) == 2
    for job in cronjobs:
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "secret" in volumes[mounts["/etc/openstack"]]
        state = volumes[mounts["/var/lib/osbuild"]]
        assert state["persistentVolumeClaim"]["claimName"] in claims
        args = container["args"]
        assert args[args.index("--state-dir") + 1] == "/var/lib/osbuild"
        if args[0] == "gc":
            assert _accepted(args)


def test_cronjob_build_args_parse() -> None:
    for job in (d for d in _k8s() if d["kind"] == "CronJob"):
        args = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert _accepted(args)


def test_configmap_spec_is_valid(tmp_path: Path) -> None:
    (cm,) = [d for d in _k8s() if d["kind"] == "ConfigMap"]
    for name, text in cm["data"].items():
        msi = tmp_path / "CloudbaseInitSetup_x64.msi"
        msi.write_bytes(b"stand-in")
        text = text.replace("/var/lib/osbuild/media/CloudbaseInitSetup_x64.msi", str(msi))
        spec = parse_spec(text, source=name)
        assert spec.name == name.removesuffix(".yaml")


def test_containerfile_non_root_and_copies_what_exists() -> None:
    text = (ROOT / "Containerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all(f.endswith("python:3.11-slim") for f in froms)
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0:", "0"))
    assert 'ENTRYPOINT ["osbuild"]' in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def _build_argvs() -> dict[str, list[str]]:
    """The `osbuild build` command line of each scheduling example."""
    service = _unit(SYSTEMD / "osbuild@.service")["Service"]["ExecStart"][0]
    cron = [_osbuild_argv(" ".join(j.split()[5:])) for j in _cron_jobs() if " build " in j]
    (k8s,) = [d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
              for d in _k8s() if d["kind"] == "CronJob" and d["metadata"]["name"].endswith("build")]
    return {"systemd": _osbuild_argv(service), "cron": cron[0], "kubernetes": k8s}


@pytest.mark.parametrize("where", ["systemd", "cron", "kubernetes"])
def test_every_scheduled_build_refreshes_when_safe_and_skips_when_unchanged(where: str) -> None:
    # Issue 14: `--refresh auto` is the cron default; README's examples pair it with
    # --if-changed and --json.
    args = build_parser().parse_args(_build_argvs()[where])
    assert (args.command, args.refresh, args.if_changed, args.json) == ("build", "auto", True,
                                                                       True)


def test_the_readme_describes_the_scheduling_examples_as_they_are() -> None:
    readme = (ROOT / "README.md").read_text()
    systemd = _build_argvs()["systemd"]
    assert "`--if-changed --refresh auto --json --metrics-file ...`" in readme
    assert systemd[:5] == ["build", "--if-changed", "--refresh", "auto", "--json"]
    assert systemd[5] == "--metrics-file"
    service = _unit(SYSTEMD / "osbuild@.service")["Service"]
    assert service["TimeoutStopSec"] == ["15min"] and service["SuccessExitStatus"] == ["130"]
    timer = _unit(SYSTEMD / "osbuild@.timer")["Timer"]
    assert timer["OnCalendar"] == ["Sun *-*-* 02:00:00"] and timer["RandomizedDelaySec"] == ["1h"]
    assert _unit(SYSTEMD / "osbuild-gc.timer")["Timer"]["OnCalendar"] == ["hourly"]
    for job in (d for d in _k8s() if d["kind"] == "CronJob"):
        assert job["apiVersion"] == "batch/v1" and job["spec"]["schedule"]
        spec = job["spec"]["jobTemplate"]["spec"]
        assert spec["backoffLimit"] == 0
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        if job["metadata"]["name"].endswith("build"):
            assert pod["terminationGracePeriodSeconds"] == 900
    assert "`backoffLimit: 0`" in readme and "`terminationGracePeriodSeconds: 900`" in readme
