"""Image hygiene: the captured image's size depends on what the guest removed and zeroed.

The simulated guest tracks the bytes it writes and frees (osbuild_sim/disk_usage.py); a
qcow2 capture holds its non-zero blocks, so each hygiene step shows in Glance's `size`,
which the build report and the image's properties record with the virtual size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuild_sim import disk_usage
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

NO_HYGIENE = {"component_cleanup": False, "wu_cache": False, "pagefile": False,
              "hiberfile": False, "zero_free_space": False}


def _built(cloud: Cloud, **changes: object) -> tuple[dict, dict, dict]:
    run = cloud.build(cloud.spec(verify={"enabled": False}, **changes))
    assert run.exit_code == 0, run.why
    report = json.loads(Path(run.success["report"]).read_text())
    image = dict(cloud.sim.connect().image.get(f"/images/{run.success['image_id']}").json())
    return report, image, cloud.image_record(run.success["image_id"])


def test_hygiene_shrinks_the_captured_image_and_the_report_says_by_how_much(
        cloud: Cloud) -> None:
    report, image, record = _built(cloud, updates={"enabled": True, "max_passes": 2})
    files = record["disk"]["files"]
    # what each step removes is gone, and the freed bytes were zeroed
    assert files["pagefile"] == files["superseded"] == files["download"] == 0
    assert record["disk"]["freed"] == 0
    size, virtual = report["image"]["size"], report["image"]["virtual_size"]
    assert size == image["size"] == record["disk"]["nonzero"]
    assert virtual == image["virtual_size"] == 40 * disk_usage.GIB
    assert image["osbuild_image_size"] == str(size)
    assert image["osbuild_virtual_size"] == str(virtual)

    bare, bare_image, bare_record = _built(cloud, updates={"enabled": True, "max_passes": 2},
                                           hygiene=NO_HYGIENE)
    assert bare_record["disk"]["files"]["pagefile"] == disk_usage.PAGEFILE
    assert bare_record["disk"]["freed"] > 0  # the updates' scratch files, never zeroed
    assert bare["image"]["size"] == bare_image["size"] > size + disk_usage.PAGEFILE
    assert bare["image"]["virtual_size"] == virtual


def test_zeroing_alone_saves_the_bytes_of_deleted_files(cloud: Cloud) -> None:
    _report, _image, zeroed = _built(cloud, updates={"enabled": True, "max_passes": 1},
                                     hygiene={**NO_HYGIENE, "zero_free_space": True})
    assert zeroed["disk"]["freed"] == 0
    assert zeroed["disk"]["files"]["download"] > 0  # the cache stays without wu_cache
