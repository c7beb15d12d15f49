"""Orchestrator overhead on the simulated cloud: a benchmark that prints numbers.

Part 1 runs builds one after another against an in-process simulated cloud whose schedule is
instrumented, and prints per build:
- wall time, and the build's duration in cloud (simulated) seconds;
- the cloud's own delays: the part of the build during which the simulated cloud had work
  pending for it (a volume copying, the guest installing, an upload running, SHUTOFF not
  yet reported...). The rest of the cloud time is the orchestrator's overhead: polling lag,
  request round trips, its own computation;
- API calls by kind and console bytes fetched (from the build's report).
Part 2 runs `osbuild build --parallel N` for each N as a separate process against
`osbuild sim serve`, N specs at once, and prints total wall time and the orchestrator
process's peak memory (max RSS).

    python benchmarks/overhead.py [--speed 600] [--builds 3] [--parallel 1,10,50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from osbuild.pipeline import BuildOptions  # noqa: E402
from osbuild.resources import examples_dir  # noqa: E402
from osbuild.spec import load_spec  # noqa: E402
from osbuild.unattended.jobs import run_builds  # noqa: E402
from osbuild_sim import SimCloud  # noqa: E402
from osbuild_sim import machines as sim_machines  # noqa: E402
from osbuild_sim.media import cloudbase_msi_standin  # noqa: E402

SPEC = "ws2022-standard.yaml"


class BusyRecorder:
    """Records the simulated intervals during which the cloud had work pending."""

    def __init__(self, sim: SimCloud) -> None:
        self.intervals: list[tuple[float, float]] = []
        world = sim.world
        original_schedule = world.schedule
        original_guest = sim_machines.apply_next_guest_event
        last_guest_event: dict[str, float] = {}

        def schedule(delay: float, action: Any, *, at: float | None = None) -> None:
            start = world.now() if at is None else at
            self.intervals.append((start, start + delay))
            original_schedule(delay, action, at=at)

        def guest_event(w: Any, server: Any) -> None:
            at = server.powered_on_at + server.next_event.at
            since = last_guest_event.get(server.id, server.powered_on_at)
            self.intervals.append((since, at))
            last_guest_event[server.id] = at
            original_guest(w, server)

        world.schedule = schedule  # type: ignore[method-assign]
        sim_machines.apply_next_guest_event = guest_event

    def busy_between(self, start: float, end: float) -> float:
        """Length of the union of recorded intervals, clipped to [start, end]."""
        clipped = sorted((max(a, start), min(b, end)) for a, b in self.intervals
                         if b > start and a < end)
        total, cur_a, cur_b = 0.0, None, None
        for a, b in clipped:
            if cur_b is None or a > cur_b:
                if cur_b is not None:
                    total += cur_b - cur_a  # type: ignore[operator]
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        if cur_b is not None:
            total += cur_b - cur_a  # type: ignore[operator]
        return total


def prepare_specs(workdir: Path, count: int) -> list[Path]:
    base = yaml.safe_load((examples_dir() / SPEC).read_text())
    (workdir / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
    paths = []
    for index in range(count):
        data = dict(base, name=f"bench-{index:03d}")
        path = workdir / f"bench-{index:03d}.yaml"
        path.write_text(yaml.safe_dump(data))
        paths.append(path)
    return paths


def sequential(speed: float, builds: int) -> None:
    print(f"== sequential builds of {SPEC} at sim speed x{speed:.0f} ==")
    workdir = Path(tempfile.mkdtemp(prefix="osbuild-bench-"))
    try:
        specs = prepare_specs(workdir, builds)
        with SimCloud(speed=speed) as sim:
            recorder = BusyRecorder(sim)
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(sim.write_clouds_yaml(workdir / "c.yaml"))
            totals: Counter[str] = Counter()
            for path in specs:
                spec = load_spec(path)
                sim_start, wall_start = sim.clock.now(), time.monotonic()
                options = BuildOptions(log_dir=workdir / "logs")  # the pace: in c.yaml
                # No listeners: the events are not rendered (the report has what we need).
                [result] = run_builds(specs=[spec], clouds=[sim.cloud_name],
                                      options=options).results
                wall = time.monotonic() - wall_start
                sim_end = sim.clock.now()
                cloud_time = sim_end - sim_start
                busy = recorder.busy_between(sim_start, sim_end)
                report = json.loads(Path(result.report_path).read_text())  # type: ignore[arg-type]
                calls = report["api_calls"]
                totals.update(calls)
                overhead = cloud_time - busy
                print(f"{spec.name}: {'ok' if result.succeeded else 'FAILED'}; wall "
                      f"{wall:.2f}s; cloud time {cloud_time:.0f}s, of which the cloud's own "
                      f"delays {busy:.0f}s and orchestrator overhead {overhead:.0f}s "
                      f"({100 * overhead / cloud_time:.1f}%, {overhead / speed:.2f}s real); "
                      f"{sum(calls.values())} API calls; console "
                      f"{report['console']['bytes_fetched']} bytes in "
                      f"{report['console']['polls']} polls")
            print("API calls per build by kind (mean):")
            for kind, count in sorted(totals.items(), key=lambda kv: -kv[1]):
                print(f"  {kind:<28} {count / builds:7.1f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def parallel(speed: float, levels: list[int]) -> None:
    print(f"== osbuild build --parallel N, N specs at once, sim speed x{speed:.0f} ==")
    for level in levels:
        workdir = Path(tempfile.mkdtemp(prefix="osbuild-bench-par-"))
        try:
            specs = prepare_specs(workdir, level)
            faults = workdir / "faults.yaml"
            faults.write_text(yaml.safe_dump({"quotas": {
                "compute": {"instances": 4 * level, "cores": 40 * level, "ram": 100000 * level,
                            "key_pairs": 10 * level},
                "volume": {"volumes": 10 * level, "gigabytes": 200 * level},
                "network": {"port": 10 * level},
            }}))
            clouds = workdir / "clouds.yaml"
            sim = subprocess.Popen(
                [sys.executable, "-m", "osbuild", "sim", "serve", "--port", "0",
                 "--clouds-yaml", str(clouds), "--speed", str(speed), "--faults", str(faults)],
                stdout=subprocess.PIPE, text=True)
            try:
                assert sim.stdout is not None
                ready = sim.stdout.readline()
                if not ready.startswith("ready"):
                    raise SystemExit(f"sim did not start: {ready!r}")
                env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
                started = time.monotonic()
                build = subprocess.Popen(
                    [sys.executable, "-m", "osbuild", "build", *map(str, specs),
                     "--os-cloud", "osbuild-sim", "--parallel", str(level), "--json",
                     "--time-scale", str(speed), "--log-dir", str(workdir / "logs")],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
                assert build.stdout is not None
                out = build.stdout.read()
                # wait4 gives this process's own peak RSS (not the simulated cloud's).
                _pid, status, usage = os.wait4(build.pid, 0)
                build.returncode = os.waitstatus_to_exitcode(status)
                wall = time.monotonic() - started
                events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                ok = sum(1 for e in events if e["event"] == "build.succeeded")
                reasons = Counter(e["reason"].split(":")[0] + ": " + e["reason"][-60:]
                                  for e in events if e["event"] == "build.failed")
                print(f"--parallel {level:>3}: {ok}/{level} built, total wall {wall:6.1f}s, "
                      f"exit {build.returncode}, orchestrator peak RSS "
                      f"{usage.ru_maxrss / 1024:.0f} MiB")
                for reason, count in reasons.most_common(5):
                    print(f"      {count} failed: {reason}")
            finally:
                sim.terminate()
                sim.wait(timeout=30)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--parallel", default="1,10,50")
    parser.add_argument("--parallel-speed", type=float, default=60.0,
                        help="sim speed for the parallel runs: 50 builds on 2 cores cannot "
                        "keep up with a cloud running 600x faster than real time")
    args = parser.parse_args()
    sequential(args.speed, args.builds)
    parallel(args.parallel_speed, [int(n) for n in args.parallel.split(",") if n])


if __name__ == "__main__":
    main()
