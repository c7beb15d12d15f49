"""`osbuild demo`: the main job end to end against the embedded simulated cloud.

Starts the simulated cloud in this process, builds the Server 2022 example spec in it,
prints the resulting image and the stage timeline, checks that nothing but the image was
left behind, and stops the cloud.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from osbuild import naming
from osbuild.cli import jsonout, options
from osbuild.cli.build import print_signal, print_summary
from osbuild.durations import format_duration
from osbuild.errors import InvalidInput
from osbuild.resources import examples_dir

if TYPE_CHECKING:
    from osbuild.pipeline import BuildResult

DEMO_SPEC = "ws2022-standard.yaml"
DEMO_SPEED = 600.0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", default=DEMO_SPEC, metavar="NAME",
                        help=f"example spec from etc/builds (default {DEMO_SPEC})")
    parser.add_argument("--speed", type=float, default=DEMO_SPEED,
                        help="how much faster than real time the simulated cloud runs "
                        f"(default {DEMO_SPEED:.0f})")
    options.add_json(parser)
    parser.add_argument("--keep", action="store_true",
                        help="keep the demo's working directory (logs, report)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not above: they load openstacksdk, pydantic and the simulator.
    from osbuild.cli.output import event_view
    from osbuild.pipeline import BuildOptions
    from osbuild.spec import load_spec
    from osbuild.unattended.jobs import run_builds
    from osbuild_sim import SimCloud
    from osbuild_sim.media import cloudbase_msi_standin

    examples = sorted(p.name for p in examples_dir().glob("*.yaml"))
    if args.spec not in examples and f"{args.spec}.yaml" in examples:
        args.spec = f"{args.spec}.yaml"  # the family's name, as `osbuild status` shows it
    if args.spec not in examples:
        raise InvalidInput([f"--spec {args.spec}: not an example spec; the demo builds one of "
                            f"{', '.join(examples)} (your own specs: osbuild sim serve, "
                            "then osbuild build)"])
    # With --json, stdout carries events only (README: one JSON object per line).
    say = sys.stderr if args.json else sys.stdout
    workdir = Path(tempfile.mkdtemp(prefix="osbuild-demo-"))
    try:
        spec_path = workdir / args.spec
        shutil.copy(examples_dir() / args.spec, spec_path)
        # The examples ship cloudbase-init's MSI on the config ISO; the demo uses a stand-in.
        (workdir / "CloudbaseInitSetup_x64.msi").write_bytes(cloudbase_msi_standin())
        spec = load_spec(spec_path)
        with SimCloud(speed=args.speed) as sim:
            clouds_yaml = sim.write_clouds_yaml(workdir / "clouds.yaml")
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds_yaml)
            print(f"simulated cloud at {sim.auth_url} (speed x{args.speed:.0f})", file=say)
            build_options = BuildOptions(log_dir=workdir / "logs")
            with event_view(json_output=args.json) as view:
                outcome = run_builds(specs=[spec], clouds=[sim.cloud_name],
                                     options=build_options, listeners=[view],
                                     on_signal=print_signal)
            results = outcome.results
            leftovers = leaked_resources(sim.resources(),
                                         keep={r.image_id for r in results if r.image_id})
        if not args.json:
            print_summary(results)
            for result in results:
                if result.succeeded:
                    print_image(result)
                print_timeline(result)
        if leftovers:
            print("left behind in the simulated cloud: " + ", ".join(leftovers), file=say)
        elif not args.json:
            print("nothing left behind in the simulated cloud")
        if not args.json:
            print("\nnext: your own spec by hand against `osbuild sim serve` (README, \"The "
                  "simulated cloud\"), or a build in your cloud (README, \"Building in your "
                  "cloud\")")
        code = outcome.exit_code
        code = code if code or not leftovers else 1
        if args.json:
            # The demo's own verdict, after the build's events: what a human reads last.
            jsonout.print_json({"command": "demo", "exit_code": code, "leftovers": leftovers,
                                "kept": str(workdir) if args.keep else None})
        return code
    finally:
        if args.keep:
            print(f"demo files kept in {workdir}", file=say)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            # The summary named the report and its page: say they went, and how to keep them.
            print(f"demo files deleted ({workdir}: the report and page named above, the "
                  "logs); osbuild demo --keep keeps them", file=say)


def leaked_resources(resources: dict, keep: set[str]) -> list[str]:
    """Resources a build created that are still in the simulated cloud, as 'kind id'."""
    leaked = []
    for kind, items in resources.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict) or item.get("seeded") or item.get("id") in keep:
                continue
            if kind in ("flavors", "networks", "subnets", "security_groups"):
                continue
            leaked.append(f"{kind} {item.get('id')}")
    return leaked


def print_image(result: BuildResult) -> None:
    """The image as an operator first looks at it: what Nova boots it with, and osbuild's
    own record in a line (its digests are for tooling: `osbuild images list --json`)."""
    from osbuild.pipeline.steps.publish_image import PROP_SIZE, PROP_VIRTUAL_SIZE
    from osbuild.report.pages import format_bytes

    props = result.image_properties

    def size(key: str) -> str:
        value = props.get(key, "")
        return format_bytes(int(value)) if value.isdigit() else "-"

    print(f"\nimage {result.image_name} ({result.image_id})")
    print(f"  {size(PROP_SIZE)} stored, a {size(PROP_VIRTUAL_SIZE)} disk; "
          f"{props.get(naming.PROP_BUILD_KIND, 'full')} build; "
          f"boot test {props.get(naming.PROP_VERIFY, '-')}")
    nova = [f"{k}={v}" for k, v in sorted(props.items()) if k.startswith(("hw_", "os_"))]
    print("  what Nova boots it with: " + " ".join(nova))
    own = [k for k in props if k.startswith("osbuild_")]
    print(f"  and {len(own)} osbuild_* properties (build id, family, inputs' digests): "
          "osbuild images list --json, or the report")


def print_timeline(result: BuildResult) -> None:
    print("\nsteps (cloud time):")
    for step, seconds in result.step_timings.items():
        print(f"  {step:<14} {format_duration(seconds):>8}")
    if result.stages:
        print("guest stages (cloud time since build start):")
        for stage in result.stages:
            start = format_duration(stage["started"]) if stage["started"] >= 1 else "0s"
            end = stage.get("finished")
            span = format_duration(end - stage["started"]) if end is not None else "-"
            print(f"  {stage['stage']:<14} at {start:>8}  took {span:>8}  {stage['status']}")
