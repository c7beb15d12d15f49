"""Every build writes report.html beside report.json, whatever happened to it: real builds
in the simulated cloud, one per way a build ends, and the page read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from tests.e2e.conftest import Cloud
from tests.e2e.test_signals import start_build
from tests.support.cliprocess import interrupt_when

from .helpers import active_content, parse, table_rows, text_of

pytestmark = pytest.mark.slow

PASSWORD = "Report-Known-Pass-4f2a!"
PRODUCT_KEY = "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"
SCRIPT = "<script>alert('report')</script>"


@pytest.fixture(autouse=True)
def known_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's Windows password, known to the test so it can look for it."""
    monkeypatch.setattr("osbuild.pipeline.steps.render_config.generate_password",
                        lambda: PASSWORD)


def _page(cloud: Cloud, events: list[dict[str, Any]]) -> tuple[Any, str, dict[str, Any]]:
    build_id = events[-1]["build_id"]
    folder = cloud.log_dir / build_id
    html = (folder / "report.html").read_text(encoding="utf-8")
    tree = parse(html)
    assert active_content(tree) == []
    assert PASSWORD not in html and PRODUCT_KEY not in html
    return tree, html, json.loads((folder / "report.json").read_text())


def _step_status(tree: Any) -> dict[str, str]:
    return {row[0]: row[3] for row in table_rows(tree, "steps")}


def _resources_gone(tree: Any) -> None:
    fates = {row[6] for row in table_rows(tree, "resources") if row[0] != "local"}
    assert fates == {"deleted"}, table_rows(tree, "resources")


def test_a_successful_build(cloud: Cloud) -> None:
    spec = cloud.spec(windows={"product_key": PRODUCT_KEY},
                      image={"properties": {"note": SCRIPT}})
    run = cloud.build(spec)
    assert run.exit_code == 0, run.why
    tree, _html, report = _page(cloud, run.events)
    assert text_of(tree, "outcome") == "succeeded"
    assert f"built image {run.success['image_name']}" in text_of(tree, "reason")
    assert set(_step_status(tree).values()) == {"ok"}
    assert list(_step_status(tree))[-1] == "promote"
    stages = [row[0] for row in table_rows(tree, "stages")]
    assert stages[0] == "winpe" and stages[-1] == "sysprep" and "updates" in stages
    ticks = table_rows(tree, "ticks")
    kinds = [row[1] for row in ticks]
    assert "update-pass" in kinds and "reboot" in kinds
    assert [row[2] for row in ticks][-2:] == [
        "boot test passed", f"image promoted: {run.success['image_name']}"]
    # One firmware boot per SeaBIOS banner on the builder's console, each on the time axis.
    banners = (cloud.log_dir / run.success["build_id"] / "console.log").read_text() \
        .count("SeaBIOS (version")
    assert banners >= 3 and kinds.count("boot") == banners
    assert tree.xpath('//div[contains(@class,"console")]/div[@class="marker"]')
    assert tree.xpath('//div[contains(@class,"console")]/div[@class="boot"]')
    image_rows = {row[0]: row[1] for row in table_rows(tree, "image")}
    assert image_rows["id"] == run.success["image_id"]
    assert image_rows["size"].endswith(f"({report['image']['size']} bytes)")
    properties = dict(table_rows(tree, "properties"))
    assert properties["note"] == SCRIPT and properties["osbuild_verify"] == "passed"
    fates = {row[1].rsplit("-", 1)[-1]: row[6] for row in table_rows(tree, "resources")}
    assert fates["image"] == "kept" and fates["builder"] == "deleted"
    services = [row[0] for row in table_rows(tree, "api")]
    assert {"compute", "image", "block-storage", "identity"} <= set(services)
    assert text_of(tree, "console").count("boot test") == 1  # the verify server's console


def test_a_guest_failure_marker(cloud: Cloud) -> None:
    message = f"{SCRIPT} key {PRODUCT_KEY} password {PASSWORD}"
    cloud.sim.faults.add_guest_scenario(
        {"fail_stage": "cloudbaseinit", "fail_message": message}, name="builder$")
    run = cloud.build(cloud.spec(windows={"product_key": PRODUCT_KEY}))
    assert run.exit_code == 1
    tree, _html, _ = _page(cloud, run.events)
    assert text_of(tree, "outcome") == "failed"
    reason = text_of(tree, "reason")
    assert f"the guest reported a failure: {SCRIPT} key [redacted] password [redacted]" in reason
    assert "failed in cloudbaseinit" in text_of(tree, "result")
    assert _step_status(tree)["install"] == "failed"
    [fail_line] = tree.xpath('//div[contains(@class,"console")]/div[contains(@class,"fail")]')
    assert fail_line.get("class") == "fail failure" and SCRIPT in fail_line.text_content()
    assert "no image was published" in text_of(tree, "image")
    assert text_of(tree, "next") == ("nothing else of the build is left in the cloud: deal "
                                     "with the reason above, then run the build again")
    _resources_gone(tree)


def test_a_nova_fault(cloud: Cloud) -> None:
    cloud.sim.faults.add_scenario("no_valid_host", name="builder$")
    run = cloud.build(cloud.spec())
    assert run.exit_code == 1
    tree, _html, _ = _page(cloud, run.events)
    assert "No valid host was found" in text_of(tree, "reason")
    steps = _step_status(tree)
    failed = [name for name, status in steps.items() if status == "failed"]
    assert failed == [list(steps)[-1]]
    # Its server never reached the install step, which writes the transcript: not "gone".
    assert text_of(tree, "console").endswith(
        "console.log no console transcript: the build stopped before its install step read "
        "the builder's console")
    _resources_gone(tree)


def test_a_stage_timeout(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"setup_hangs": True}, name="builder$")
    run = cloud.build(cloud.spec(builder={"stage_timeouts": {"winpe": "20m"}}))
    assert run.exit_code == 1
    tree, _html, _ = _page(cloud, run.events)
    assert "no progress in stage winpe" in text_of(tree, "reason")
    assert _step_status(tree)["install"] == "failed"
    # The console lines the timeout quotes are marked in the transcript.
    assert tree.xpath('//div[contains(@class,"console")]/div[contains(@class,"failure")]')
    _resources_gone(tree)


def test_a_failed_boot_test(cloud: Cloud) -> None:
    cloud.sim.faults.add_guest_scenario({"cloudbase_init_never_finishes": True},
                                        name="-verify$", times=1)
    run = cloud.build(cloud.spec(verify={"timeout": "30m"}))
    assert run.exit_code == 1
    tree, _html, report = _page(cloud, run.events)
    assert text_of(tree, "outcome") == "failed"
    assert "cloudbase-init" in text_of(tree, "reason")
    assert _step_status(tree)["verify"] == "failed"
    assert any(row[1] == "fail" and row[2].startswith("boot test failed: ")
               for row in table_rows(tree, "ticks"))
    assert "boot test" in text_of(tree, "console")
    # The image is in Glance, hidden, for `osbuild images verify`: the page says so.
    [kept] = [k for k in report["kept_for_debugging"] if k.startswith("image ")]
    assert text_of(tree, "image").endswith(
        f"kept, hidden and not current: {kept} (the build failed in verify)")
    image_id = kept.split()[1]
    assert text_of(tree, "next").startswith(
        f"image {image_id} is kept, hidden: osbuild images verify {image_id} tests it again")
    assert f"then osbuild images promote {image_id} makes it current" in text_of(tree, "next")
    assert report["failed_stage"] == "verify"


def test_an_interrupted_build(cloud: Cloud) -> None:
    proc = start_build(cloud)
    events, err = interrupt_when(
        proc, lambda e: e["event"] == "stage" and e["stage"] == "winpe")
    assert proc.returncode == 130, err
    tree, _html, _ = _page(cloud, events)
    assert text_of(tree, "outcome") == "interrupted"
    assert "SIGINT" in text_of(tree, "reason")
    # Cut short, not failed, and nothing still "running" in a finished report (an outside
    # tryout read "install failed" and "updates running" under "interrupted").
    assert _step_status(tree)["install"] == "interrupted"
    [winpe] = table_rows(tree, "stages")
    assert (winpe[0], winpe[3]) == ("winpe", "interrupted")
    written = json.loads((Path(cloud.log_dir) / events[-1]["build_id"]
                                 / "report.json").read_text())
    assert written["result"] == "interrupted" and written["interrupted"] is True
    assert written["stages"][-1]["status"] == "interrupted"
    assert written["stages"][-1]["finished"] is not None
    assert "stopped in winpe" in text_of(tree, "result")  # the guest stage, as a failure
    assert "no image was published: the build was interrupted in winpe" in text_of(
        tree, "image")
    assert text_of(tree, "next") == ("nothing else of the build is left in the cloud: run "
                                     "the same command again")
    _resources_gone(tree)


def test_report_html_sits_beside_report_json(cloud: Cloud) -> None:
    run = cloud.build(cloud.spec(windows={"iso_image": f"no-such-iso{SCRIPT}"}))
    assert run.exit_code == 2
    folder = Path(cloud.log_dir) / run.events[-1]["build_id"]
    tree = parse((folder / "report.html").read_text())
    assert f"no-such-iso{SCRIPT}" in text_of(tree, "reason")
    assert "no console transcript: the builder never booted" in text_of(tree, "console")


def test_a_page_that_cannot_be_written_is_a_warning_not_a_failure(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("osbuild.report.build.write_build_html", broken)
    run = cloud.build(cloud.spec(windows={"iso_image": "no-such-iso"}))
    assert run.exit_code == 2  # what preflight decided, not what the page did
    [warning] = [e for e in run.named("warning") if "HTML report" in e["message"]]
    assert warning["message"] == ("could not write the HTML report: "
                                  "[Errno 28] No space left on device")
    assert (cloud.log_dir / run.events[-1]["build_id"] / "report.json").is_file()


def test_the_summary_names_the_page(cloud: Cloud) -> None:
    cloud.capsys.readouterr()
    code = main(["build", str(cloud.spec(windows={"iso_image": "no-such-iso"})),
                 "--os-cloud", cloud.sim.cloud_name, "--log-dir", str(cloud.log_dir)])
    assert code == 2
    err = cloud.capsys.readouterr().err
    [page] = [line.split("page: ", 1)[1] for line in err.splitlines() if "  page: " in line]
    assert Path(page).name == "report.html" and Path(page).is_file()
    assert Path(page).parent.parent == cloud.log_dir
