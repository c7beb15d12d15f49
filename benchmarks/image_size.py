"""Captured image size with and without each image hygiene step, on the simulated guest.

Renders the example spec's guest media with a `hygiene:` block, plays the simulated Windows
guest (osbuild_sim/guest.py) from power-on to sysprep's power-off, and prints the size a
qcow2 capture of its disk would have (its non-zero blocks: osbuild_sim/disk_usage.py), for
no hygiene, zeroing alone, zeroing with each other step, and all steps (the default). The
numbers are the simulator's model of a fresh install, not measurements of real Windows: they
show what each step saves relative to the others, and that a change to the scripts still
saves it.

    python benchmarks/image_size.py [--spec ws2022-standard.yaml] [--update-passes 2]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from osbuild.media.render import render_media  # noqa: E402
from osbuild.resources import examples_dir  # noqa: E402
from osbuild.spec import load_spec  # noqa: E402
from osbuild_sim import disk_usage, media  # noqa: E402
from osbuild_sim import guest as sim_guest  # noqa: E402
from osbuild_sim.hypervisor import AttachedDevice, build_machine  # noqa: E402

STEPS = ("component_cleanup", "wu_cache", "pagefile", "hiberfile", "zero_free_space")
NONE = dict.fromkeys(STEPS, False)


def captured_bytes(spec_file: str, hygiene: dict[str, bool], passes: int, work: Path) -> int:
    data = yaml.safe_load((examples_dir() / spec_file).read_text())
    data["hygiene"] = hygiene
    data["updates"] = {"enabled": passes > 0, "max_passes": max(passes, 1)}
    folder = Path(tempfile.mkdtemp(dir=work))
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    (folder / "CloudbaseInitSetup_x64.msi").write_bytes(media.cloudbase_msi_standin())
    spec = load_spec(spec_path)
    rendered = render_media(spec, folder / "out", build_id="benchmark-image-size")
    seeds = {seed.name: seed for seed in media.seed_images()}
    uefi = spec.windows.firmware == "uefi"
    props = {"hw_firmware_type": spec.windows.firmware,
             "hw_machine_type": "q35" if uefi else "pc", "hw_disk_bus": spec.builder.disk_bus}
    if spec.windows.secure_boot:
        props["os_secure_boot"] = "required"
    installer, virtio = seeds[spec.windows.iso_image], seeds[spec.virtio.iso_image]
    machine = build_machine([
        AttachedDevice("disk", spec.builder.disk_bus, 0, "blank", None, b"", props),
        AttachedDevice("cdrom", None, 1, "volume", "iso", installer.data, installer.properties),
        AttachedDevice("cdrom", None, None, "volume", "virtio", virtio.data, virtio.properties),
        AttachedDevice("cdrom", None, None, "volume", "config",
                       rendered.iso_path.read_bytes(), {}),
    ], props)
    # A fixed seed: the guest's random number of update rounds is the same for every row.
    events = list(sim_guest.boot(machine, rng=random.Random(11)))
    writes = [e.action.data for e in events if isinstance(e.action, sim_guest.WriteDisk)]
    record = sim_guest.read_disk_record(writes[-1])
    if not record or not record.get("sysprep"):
        raise SystemExit(f"the simulated guest did not reach sysprep with {hygiene}")
    return disk_usage.captured_size(record, "qcow2", spec.builder.disk_gb * disk_usage.GIB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="ws2022-standard.yaml",
                        help="an example in etc/builds/")
    parser.add_argument("--update-passes", type=int, default=2,
                        help="Windows Update passes (0: updates off)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="osbuild-image-size-"))
    try:
        # Deleting saves nothing in a qcow2 capture until the freed blocks read as zero, so
        # each other step is shown together with zero_free_space.
        zero = {**NONE, "zero_free_space": True}
        rows = [("no hygiene", NONE), ("zero_free_space", zero)]
        rows += [(f"zero + {step}", {**zero, step: True}) for step in STEPS[:-1]]
        rows.append(("all steps (default)", dict.fromkeys(STEPS, True)))
        base = None
        print(f"{args.spec}, {args.update_passes} update passes, qcow2 capture "
              "(simulated guest)")
        print(f"{'hygiene':<26}{'captured MiB':>14}{'saved MiB':>12}")
        for label, hygiene in rows:
            size = captured_bytes(args.spec, hygiene, args.update_passes, work)
            base = size if base is None else base
            print(f"{label:<26}{size / disk_usage.MIB:>14,.0f}"
                  f"{(base - size) / disk_usage.MIB:>12,.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
