"""GET /_sim/resources and stats: what exists right now, and what the API was asked."""

from __future__ import annotations

from typing import Any

import requests

from osbuild_sim.machines import DELETE_SECONDS
from osbuild_sim.storage import DETACH_SECONDS
from tests.sim.conftest import run_until, server_status, volume_status


def test_resources_lists_everything_and_flags_seeded_images(
    sim: Any, conn: Any, boot_blank: Any
) -> None:
    empty = requests.get(f"{sim.base_url}/_sim/resources", timeout=10).json()
    assert empty["servers"] == [] and empty["volumes"] == [] and empty["ports"] == []
    assert empty["images"] and all(i["seeded"] for i in empty["images"])

    conn.compute.create_keypair(name="k")
    volume = conn.block_storage.create_volume(size=1, name="data")
    run_until(sim, lambda: volume_status(conn, volume.id) == "available")
    conn.block_storage.set_volume_bootable_status(volume, True)
    server = conn.compute.create_server(
        name="listed", flavor_id="2", networks=[{"uuid": conn.network.find_network("private").id}],
        block_device_mapping=[{"boot_index": 0, "uuid": volume.id, "source_type": "volume",
                               "destination_type": "volume"}])
    run_until(sim, lambda: server_status(conn, server.id) == "ACTIVE")
    own = conn.image.create_image(name="mine", data=b"x", disk_format="raw",
                                  container_format="bare", allow_duplicates=True)

    listed = requests.get(f"{sim.base_url}/_sim/resources", timeout=10).json()
    assert listed == sim.resources() | {"now": listed["now"]}
    assert [s["id"] for s in listed["servers"]] == [server.id]
    assert [v["id"] for v in listed["volumes"]] == [volume.id]
    assert [(a["volume_id"], a["server_id"]) for a in listed["attachments"]] == [
        (volume.id, server.id)]
    assert [p["device_id"] for p in listed["ports"]] == [server.id]
    assert [k["name"] for k in listed["keypairs"]] == ["k"]
    mine = [i for i in listed["images"] if not i["seeded"]]
    assert [i["id"] for i in mine] == [own.id]

    conn.compute.delete_server(server)
    sim.advance(DELETE_SECONDS + 0.5)
    after = sim.resources()
    assert after["servers"] == [] and after["ports"] == [] and after["attachments"] == []
    assert [v["status"] for v in after["volumes"]] == ["detaching"]
    sim.advance(DETACH_SECONDS)
    assert volume_status(conn, volume.id) == "available"


def test_stats_count_requests_per_service_and_method(sim: Any, conn: Any) -> None:
    list(conn.compute.flavors())
    list(conn.network.networks())
    conn.block_storage.create_volume(size=1, name="v")
    stats = requests.get(f"{sim.base_url}/_sim/stats", timeout=10).json()
    assert stats["requests"]["compute GET"] >= 1
    assert stats["requests"]["network GET"] >= 1
    assert stats["requests"]["volume POST"] == 1
    assert stats["requests"]["identity POST"] == 1
    assert stats["total_requests"] == sum(stats["requests"].values())


def test_clock_endpoint_advances_simulated_time(sim: Any, conn: Any) -> None:
    volume = conn.block_storage.create_volume(size=1, name="v")
    before = requests.get(f"{sim.base_url}/_sim/clock", timeout=10).json()["now"]
    after = requests.post(f"{sim.base_url}/_sim/clock", json={"advance": 60},
                          timeout=10).json()["now"]
    assert after >= before + 60
    assert volume_status(conn, volume.id) == "available"
