"""`osbuild build` end to end through the real CLI entry point against the simulated cloud."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from osbuild.cloud.image_fields import SNAPSHOT_INHERITED
from osbuild.resources import examples_dir
from osbuild_sim.guest import read_disk_record
from tests.e2e.conftest import Built, Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

EXAMPLES = sorted(p.name for p in examples_dir().glob("*.yaml"))


def glance_image(cloud: Cloud, image_id: str) -> dict:
    """The image as Glance returns it: properties flat, as any client sees them."""
    return cloud.sim.connect().image.get(f"/images/{image_id}").json()


def image_record(cloud: Cloud, image_id: str) -> dict:
    conn = cloud.sim.connect()
    data = b"".join(conn.image.download_image(image_id, stream=True).iter_content(65536))
    record = read_disk_record(data)
    assert record is not None, "the image holds no installed-Windows record"
    return record


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_builds_and_leaves_only_its_image(
        built_example: Callable[[str], Built], example: str) -> None:
    cloud, run = built_example(example)
    assert run.exit_code == 0, run.why
    # A default build has nothing to warn about: operators who learn to skip a routine
    # warning skip the real one too (a console re-ask after a reboot was one).
    assert run.named("warning") == []
    done = run.success
    props = glance_image(cloud, done["image_id"])
    assert props["status"] == "active"
    assert props["os_type"] == "windows"
    assert props["osbuild_family"] == done["family"]
    assert props["osbuild_build_id"] == done["build_id"]
    assert len(props["osbuild_input_spec"]) == 64
    assert props["osbuild_input_windows_iso"].startswith(("sha512:", "md5:"))
    assert props["osbuild_input_virtio_iso"].startswith(("sha512:", "md5:"))
    assert props["osbuild_windows_iso_id"] and props["osbuild_virtio_iso_id"]
    assert props["hw_machine_type"] == "q35"
    record = image_record(cloud, done["image_id"])
    assert record["build_id"] == done["build_id"]
    assert cloud.leftovers(keep={done["image_id"]}) == []
    # The stage markers arrived in the order the guest ran them.
    stages = [e["stage"] for e in run.named("stage") if e["status"] == "start"]
    assert stages[:2] == ["winpe", "specialize"] and stages[-1] == "sysprep"


def test_volume_target_bios_image_carries_spec_properties(
        built_example: Callable[[str], Built]) -> None:
    cloud, run = built_example("ws2022-standard.yaml")
    assert run.exit_code == 0, run.why
    image = glance_image(cloud, run.success["image_id"])
    assert image["hw_firmware_type"] == "bios"
    assert image["hw_disk_bus"] == "virtio"
    # The example's image.properties and image.tags.
    assert image["os_admin_user"] == "Admin"
    assert {"windows", "ws2022"} <= set(image["tags"])
    assert image["min_ram"] == 4096 and image["min_disk"] == 40
    assert image["name"].startswith("ws2022-std-")
    record = image_record(cloud, image["id"])
    assert record["image_name"] == "Windows Server 2022 SERVERSTANDARD"
    assert record["firmware"] == "bios"
    assert record["sysprep"] is True


def test_local_target_is_captured_with_nova_create_image(
        built_example: Callable[[str], Built]) -> None:
    cloud, run = built_example("ws2019-core-local.yaml")
    assert run.exit_code == 0, run.why
    image = glance_image(cloud, run.success["image_id"])
    # createImage copied the deleted temporary root image's properties into the capture;
    # publish leaves only osbuild's own (and Glance's).
    inherited = [k for k in image if k in SNAPSHOT_INHERITED or k.startswith("owner_specified.")]
    assert inherited == []
    assert image["osbuild_role"] == "image" and image["hw_firmware_type"] == "bios"
    record = image_record(cloud, image["id"])
    assert record["image_name"] == "Windows Server 2019 SERVERSTANDARDCORE"
    created = {e["kind"] for e in run.named("resource.created")}
    assert "server" in created and "image" in created


def test_report_and_transcript_are_written(built_example: Callable[[str], Built]) -> None:
    _cloud, run = built_example("ws2022-standard.yaml")
    assert run.exit_code == 0, run.why
    report = json.loads(Path(run.success["report"]).read_text())
    assert report["result"] == "succeeded"
    assert report["image"]["id"] == run.success["image_id"]
    assert report["api_calls"] and all(v > 0 for v in report["api_calls"].values())
    assert report["console"]["polls"] > 0 and report["console"]["bytes_fetched"] > 0
    assert {r["kind"] for r in report["resources"]} >= {"server", "volume", "image"}
    transcript = Path(report["console"]["transcript"]).read_text()
    assert ":sysprep:start" in transcript
    assert [s["stage"] for s in report["stages"]][-1] == "sysprep"


# ---------------------------------------------------------------- failures


def assert_clean_failure(cloud: Cloud, run, code: int, *phrases: str) -> None:
    assert run.exit_code == code, run.why
    message = run.why
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert cloud.leftovers() == []


def test_guest_failure_marker_fails_the_build(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario(
        {"fail_stage": "cloudbaseinit", "fail_message": "msiexec exited 1603"},
        name="builder$")
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 1, "cloudbaseinit", "msiexec exited 1603")
    assert run.failure["stage"] == "cloudbaseinit"
    # The stream carries the failure marker as a `stage` event and ends the install step
    # (a log shipper pairing start and end found neither: outside tryout, session 32).
    [failed] = [e for e in run.named("stage") if e["status"] == "fail"]
    assert (failed["stage"], failed["detail"]) == ("cloudbaseinit", "msiexec exited 1603")
    [ended] = run.named("step.failed")
    assert (ended["step"], ended["status"]) == ("install", "failed")
    started = [e["step"] for e in run.named("step.started")]
    finished = [e["step"] for e in run.named("step.finished")]
    assert started == [*finished, "install"], (started, finished)


def test_setup_hang_times_out_in_its_stage_with_console_tail(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"setup_hangs": True}, name="builder$")
    spec = cloud.spec(builder={"stage_timeouts": {"winpe": "20m"}})
    run = cloud.build(spec)
    assert_clean_failure(cloud, run, 1, "no progress in stage winpe",
                         "builder.stage_timeouts.winpe")
    assert "last console lines:" in run.why
    # No noVNC URL: its token opens the console to whoever reads the log, and the builder
    # it points at is deleted (report.json and the terminal showed it: session 32).
    assert "console:" not in run.why and "token" not in run.why


def test_a_kept_stalled_builder_says_how_to_open_its_console(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"setup_hangs": True}, name="builder$")
    spec = cloud.spec(builder={"stage_timeouts": {"winpe": "20m"}})
    run = cloud.build(spec, extra=("--keep-on-failure",))
    assert run.exit_code == 1, run.why
    [server] = [k.split()[1] for k in run.failure["kept"] if k.startswith("server ")]
    assert (f"console: openstack console url show {server} (the builder is kept: "
            "--keep-on-failure)") in run.why
    report = Path(run.failure["report"]).read_text()
    assert "novnc" not in report.lower() and "token=" not in report


def test_server_error_shows_novas_fault(cloud: Cloud) -> None:
    cloud.sim.faults.add_scenario("no_valid_host", name="builder$")
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 1, "No valid host was found")


def test_nova_refusing_the_builder_says_what_nova_said(cloud: Cloud) -> None:
    # Real Nova 34 refused a refresh builder with 400 "Flavor's memory is too small for
    # requested image."; the build said "boot: BadRequestException: 400: Client Error for
    # url: http://.../servers, Flavor's memory ..." (the SDK's wording, a URL), where the
    # boot test's refusal reads "verify: check server-create failed: <Nova's message>".
    cloud.sim.faults.add_rule(service="compute", method="POST", path="/servers$",
                              body="-builder", error=400)
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 1, "boot: Nova refused to create the builder server: "
                         "Injected fault: 400 from the simulated compute service")
    assert "Client Error for url" not in run.why and "BadRequestException" not in run.why


def test_volume_error_shows_cinders_message_after_one_retry(cloud: Cloud) -> None:
    cloud.sim.faults.add_scenario("volume_error_from_image", name="-virtio", times=2)
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 1, "virtio volume", "went to error",
                         "create volume from image: An unknown error occurred.")
    volume_creates = [e for e in run.named("resource.created")
                      if e["kind"] == "volume" and "virtio" in e["name"]]
    assert len(volume_creates) == 2  # recreated once before giving up


def test_volume_error_once_is_recovered(cloud: Cloud) -> None:
    cloud.sim.faults.add_scenario("volume_error_from_image", name="-virtio", times=1)
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    assert cloud.leftovers(keep={run.success["image_id"]}) == []
    # Both volumes' lives are in the events (a log consumer pairs them), and why the first
    # went: Cinder's message.
    made = {e["id"]: e["name"] for e in run.named("resource.created")
            if e["kind"] == "volume" and "virtio" in e["name"]}
    gone = {e["id"] for e in run.named("resource.deleted") if e["kind"] == "volume"}
    build_id = run.success["build_id"]
    assert sorted(made.values()) == [f"osbuild-{build_id}-virtio",
                                     f"osbuild-{build_id}-virtio-2"]
    assert set(made) <= gone
    [warning] = [e["message"] for e in run.named("warning") if "virtio volume" in e["message"]]
    assert "create volume from image: An unknown error occurred." in warning
    assert warning.endswith("deleting it and creating the virtio volume again")


def test_failed_upload_during_capture_says_what_cinder_said(cloud: Cloud) -> None:
    # A failed upload-to-image: Glance puts the image back to queued, Cinder deletes it and
    # leaves a user message (cinder/volume/manager.py copy_volume_to_image); the build
    # failed on the 404 with the SDK's text before the simulator learnt it.
    cloud.sim.faults.add_scenario("image_killed", name="-image$")
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 1, "went to deleted: Cinder says: copy volume to image: "
                         "Failed to upload volume to image at backend.")
    assert run.failure["stage"] == "capture"


def test_failed_snapshot_during_capture_names_the_request_the_admins_look_up(
        cloud: Cloud) -> None:
    # A local target's createImage whose upload fails: Nova deletes the image (@delete_
    # image_on_error) and keeps why in an instance fault that no SHUTOFF server shows; its
    # instance action (Nova 34) says success. The request id is what the cloud's admins
    # find it under; the build said only "went to deleted".
    cloud.sim.faults.add_scenario("image_killed", name="-image$")
    run = cloud.build(cloud.spec("ws2019-core-local.yaml", verify={"enabled": False}))
    assert_clean_failure(cloud, run, 1, "went to deleted: Nova gives the project no reason; "
                         "the cloud's admins find it in nova-compute's log under Nova's "
                         "createImage (request req-")
    assert run.failure["stage"] == "capture"


def test_quota_is_caught_in_preflight_and_nothing_is_created(cloud: Cloud) -> None:
    cloud.sim.faults.set_quota("compute", instances=0)
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 2, "quota: compute instances")
    assert [e for e in run.named("resource.created") if e["kind"] != "local"] == []


def test_missing_iso_image_is_a_preflight_error_naming_the_field(cloud: Cloud) -> None:
    spec = cloud.spec(windows={"iso_image": "no-such.iso"}, builder={"flavor": "m1.nope"})
    run = cloud.build(spec)
    assert_clean_failure(cloud, run, 2, "windows.iso_image: no image 'no-such.iso'",
                         "builder.flavor: no flavor 'm1.nope'")
    assert [e for e in run.named("resource.created") if e["kind"] != "local"] == []


def test_unprepared_uefi_iso_says_what_to_run(cloud: Cloud) -> None:
    spec = cloud.spec("ws2025-datacenter-uefi.yaml",
                      windows={"iso_image": "windows-server-2025-x64.iso"})
    run = cloud.build(spec)
    assert_clean_failure(cloud, run, 2, "osbuild media prepare-uefi --image "
                         "windows-server-2025-x64.iso --os-cloud osbuild-sim")


def test_cleanup_is_retried_through_injected_503s(cloud: Cloud) -> None:
    cloud.sim.faults.add_rule(service="volume", method="DELETE", error=503, times=3)
    cloud.sim.faults.add_rule(service="compute", method="DELETE", error=503, times=2)
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 0, run.why
    assert cloud.leftovers(keep={run.success["image_id"]}) == []
    fired = cloud.sim.stats()["injected_errors"]
    assert sum(fired.values()) >= 5


def test_ten_percent_transient_errors_everywhere_still_build(cloud: Cloud) -> None:
    cloud.sim.faults.load({
        "seed": 11,
        "rules": [
            {"service": "any", "error": 503, "rate": 0.05},
            {"service": "any", "error": 429, "rate": 0.05, "retry_after": 1},
        ],
    })
    run = cloud.build(cloud.spec())
    assert run.exit_code == 0, run.why
    assert cloud.leftovers(keep={run.success["image_id"]}) == []
    assert sum(cloud.sim.stats()["injected_errors"].values()) > 10


def test_keep_on_failure_keeps_the_builder_and_says_so(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"fail_stage": "virtio"}, name="builder$", times=1)
    run = cloud.build(cloud.spec(), extra=("--keep-on-failure",))
    assert run.exit_code == 1
    kept = run.failure["kept"]
    assert any(k.startswith("server ") for k in kept)
    left = cloud.leftovers()
    assert any(item.startswith("server ") for item in left)
    assert not any(item.startswith("image ") for item in left)  # config ISO image went
    # The kept builder is no build in progress: the next run of the family builds. Its fresh
    # heartbeat once made every host skip the family for 5 minutes, "already being built
    # from another host", though the build had failed on this one.
    again = cloud.build(cloud.spec(verify={"enabled": False}))
    assert again.exit_code == 0 and not again.named("build.skipped"), again.events[-1]


def test_wrong_password_is_an_input_error(cloud: Cloud) -> None:
    text = cloud.clouds_yaml.read_text()
    password = cloud.sim.identity.password if hasattr(cloud.sim.identity, "password") else None
    import yaml

    data = yaml.safe_load(text)
    auth = data["clouds"][cloud.sim.cloud_name]["auth"]
    real = auth["password"]
    auth["password"] = "wrong-" + real
    cloud.clouds_yaml.write_text(yaml.safe_dump(data))
    run = cloud.build(cloud.spec())
    assert run.exit_code == 2
    assert "authentication failed" in run.stderr
    assert real not in run.stderr and (password is None or password not in run.stderr)
    assert cloud.leftovers() == []


def test_verify_section_names_are_checked_in_preflight(cloud: Cloud) -> None:
    spec = cloud.spec(verify={"flavor": "m1.missing", "network": "nowhere"})
    run = cloud.build(spec)
    assert_clean_failure(cloud, run, 2, "verify.flavor: no flavor 'm1.missing'",
                         "verify.network: no network 'nowhere'")


def test_a_boot_test_flavor_with_less_ram_than_image_min_ram_is_a_preflight_error(
        cloud: Cloud) -> None:
    # Real Nova refuses the boot test's server on it (FlavorMemoryTooSmall), after the whole
    # install: seen on real Nova 34 with builder.flavor m1.small and image.min_ram 4096.
    run = cloud.build(cloud.spec(builder={"flavor": "m1.small"}, image={"min_ram": 4096}))
    assert_clean_failure(cloud, run, 2, "builder.flavor: m1.small has 2048 MB RAM, less than "
                         "image.min_ram (4096 MB): Nova will not boot the image on it for "
                         "the boot test (set verify.flavor, or lower image.min_ram)")
    assert [e for e in run.named("resource.created") if e["kind"] != "local"] == []
    run = cloud.build(cloud.spec(verify={"flavor": "m1.small"}, image={"min_ram": 4096}))
    assert_clean_failure(cloud, run, 2, "verify.flavor: m1.small has 2048 MB RAM, less than "
                         "image.min_ram (4096 MB)")


def test_a_public_image_by_a_member_is_warned_about_before_anything_is_made(
        cloud: Cloud) -> None:
    # Glance lets only admins make an image public (publicize_image); a member's promotion is
    # refused with 403 after the whole build (seen on real Glance 33). A cloud's policy may
    # grant it to other roles, so preflight warns, naming the key, instead of refusing.
    run = cloud.build(cloud.spec(image={"visibility": "public"}))
    warnings = [e["message"] for e in run.named("warning")]
    assert any(w.startswith("image.visibility: public: Glance lets only admins make an image "
                            "public (policy publicize_image)") and "member" in w
               for w in warnings), warnings
    first_warning = next(i for i, e in enumerate(run.events) if e["event"] == "warning")
    first_created = next(i for i, e in enumerate(run.events)
                         if e["event"] == "resource.created" and e["kind"] != "local")
    assert first_warning < first_created
    assert run.exit_code == 1 and "promote" in run.why, run.why
    # The refusal names the spec key and the way out, not the SDK's "ForbiddenException:
    # 403: Client Error for url: ...".
    assert run.failure["stage"] == "promote"
    assert "image.visibility: Glance refused to make image " in run.why, run.why
    assert "osbuild images promote" in run.why and "Client Error for url" not in run.why
    private = cloud.build(cloud.spec(image={"visibility": "private"}, verify={"enabled": False}))
    assert not private.named("warning"), private.named("warning")


def test_a_refused_rename_at_promote_is_named_as_such(cloud: Cloud) -> None:
    # A policy refusing the rename was told as "Glance refused to make image ... private"
    # (one PATCH carried both; an outside tryout, s31). Now each is its own request.
    cloud.sim.faults.add_rule(service="image", method="PATCH", body="/name", error=403)
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 1 and run.failure["stage"] == "promote", run.why
    assert "image.name: Glance refused to rename image " in run.why, run.why
    assert "image.visibility" not in run.why
    assert "osbuild images promote" in run.why


def test_a_refused_publish_is_told_in_osbuilds_words(cloud: Cloud) -> None:
    # It read "publish: ForbiddenException: 403: Client Error for url: ..." (s31).
    cloud.sim.faults.add_rule(service="image", method="PATCH", body='"/visibility"',
                              error=403, times=1)
    run = cloud.build(cloud.spec(verify={"enabled": False}))
    assert run.exit_code == 1 and run.failure["stage"] == "publish", run.why
    assert "Glance refused to set the captured image " in run.why, run.why
    assert "Client Error for url" not in run.why
    assert cloud.leftovers() == []  # the captured image went with the build


def test_no_cloud_configured_says_how_to_choose_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from osbuild.cli import main

    for var in [v for v in os.environ if v.startswith("OS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "ws2022.yaml"
    shutil.copy(examples_dir() / "ws2022-standard.yaml", spec)
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "pass --os-cloud NAME" in err
    assert "Traceback" not in err


def test_a_name_another_family_publishes_is_warned_of_before_the_build(cloud: Cloud) -> None:
    # A spec copied with a new `name` but the old `image.name` published the first family's
    # name: Glance takes duplicates, and lookups by name then find two (an outside tryout).
    first = cloud.build(cloud.spec(name="win-a", image={"name": "shared-{date}"},
                                   verify={"enabled": False}))
    assert first.exit_code == 0, first.why
    second = cloud.build(cloud.spec(name="win-b", image={"name": "shared-{date}"},
                                    verify={"enabled": False}))
    assert second.exit_code == 0, second.why
    [warning] = [e["message"] for e in second.named("warning")
                 if e["message"].startswith("image.name:")]
    assert warning == (
        f"image.name: {first.success['image_name']!r} (as it would be named today) is "
        f"already the name of image {first.success['image_id']} (family win-a): lookups by "
        "name will find both; put {name} in image.name")
    # A family's own images are not another's: win-a's next build names win-b's image only.
    again = cloud.build(cloud.spec(name="win-a", image={"name": "shared-{date}"},
                                   verify={"enabled": False}))
    [warning] = [e["message"] for e in again.named("warning")
                 if e["message"].startswith("image.name:")]
    assert f"image {second.success['image_id']} (family win-b):" in warning, warning
    assert first.success["image_id"] not in warning


def test_a_create_the_cloud_keeps_failing_names_no_python_type(cloud: Cloud) -> None:
    # It read "volumes: RuntimeError: could not create the iso volume: HttpException: 500:
    # ..." (an outside tryout, session 32): the type once, the cloud's, and the attempts.
    cloud.sim.faults.add_rule(service="volume", method="POST", path="/volumes$", error=500)
    run = cloud.build(cloud.spec())
    assert_clean_failure(cloud, run, 1, "volumes: could not create the ", " volume (4 attempts)"
                         ": HttpException: 500")
    assert "RuntimeError" not in run.why and run.failure["stage"] == "volumes"
