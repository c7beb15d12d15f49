"""The build report page: what it shows for each part, and nothing it must not show."""

from __future__ import annotations

from pathlib import Path

from osbuild.report.build import render_build_html, write_build_html

from .helpers import (
    BUILD_ID,
    CONSOLE,
    FAILED_REPORT,
    active_content,
    marker,
    parse,
    table_rows,
    text_of,
    write_report,
)

PASSWORD = "Hunter2-Build-Secret!"
PRODUCT_KEY = "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"


def test_a_failed_build_shows_result_reason_timeline_console_and_cleanup(tmp_path: Path) -> None:
    path = write_report(tmp_path / BUILD_ID, console=CONSOLE)
    tree = parse(render_build_html(path))
    assert text_of(tree, "outcome") == "failed"
    assert "msiexec exited 1603" in text_of(tree, "reason")
    assert "failed in cloudbaseinit" in text_of(tree, "result")
    # The step that was running when the guest failed ends where cleanup began.
    assert table_rows(tree, "steps") == [
        ["volumes", "0s", "1m40s", "ok"], ["boot", "1m40s", "1m40s", "ok"],
        ["install", "3m20s", "37m30s", "failed"]]
    # Boots sit at the marker that followed them on the console.
    assert table_rows(tree, "ticks") == [
        ["5m", "boot", "firmware boot, before winpe start"],
        ["25m", "update-pass", "updates: pass 1/3: 11 updates, result code 2"],
        ["25m", "boot", "firmware boot, before updates info"],
        ["26m40s", "reboot", "updates: resumed after reboot"],
        ["30m", "update-pass", "updates: pass 2/3: 3 updates, result code 2"],
        ["40m", "fail", "cloudbaseinit: msiexec exited 1603"]]
    assert len(tree.xpath('//svg//path[@class="tick-boot"]')) == 2
    assert tree.xpath('//svg//rect[@class="tick-reboot"]')
    assert len(tree.xpath('//svg//rect[contains(@class, "tick-update-pass")]')) == 2
    # Console: markers highlighted, boots marked, the failure marker marked as a failure.
    lines = tree.xpath('//div[contains(@class, "console")]/div')
    kinds = [line.get("class") for line in lines]
    assert kinds == ["boot", "plain", "marker", "marker", "boot", "marker", "fail failure"]
    assert lines[-1].xpath('.//span[@class="tag"]')[0].text == "cloudbaseinit fail"
    assert table_rows(tree, "resources") == [
        ["volume", f"osbuild-{BUILD_ID}-iso", "vol-1", "volumes", "50s", "41m40s", "deleted"],
        ["server", f"osbuild-{BUILD_ID}-builder", "srv-1", "boot", "2m30s", "40m50s",
         "deleted"]]
    assert table_rows(tree, "api") == [["compute", "43", "GET 40, POST 3", ""],
                                       ["image", "5", "GET 5", ""],
                                       ["block-storage", "2", "POST 2", ""]]
    assert "no image was published: the build failed in cloudbaseinit" in text_of(tree, "image")


def test_lines_quoted_by_a_stage_timeout_are_marked_as_failure_lines(tmp_path: Path) -> None:
    console = ["Booting from DVD/CD...", "Windows Setup is waiting", "still waiting"]
    path = write_report(tmp_path / "b", console=console, failed_stage="winpe", error=[
        "winpe: no progress in stage winpe for 20m", "last console lines:",
        "  | Windows Setup is waiting", "  | still waiting"])
    tree = parse(render_build_html(path))
    failing = tree.xpath('//div[contains(@class, "console")]/div[contains(@class, "failure")]'
                         '/span[@class="n"]/following-sibling::text()[1]')
    assert failing == ["Windows Setup is waiting", "still waiting"]


def test_hostile_values_show_as_text_and_nothing_active_gets_in(tmp_path: Path) -> None:
    script = "<script>alert('x')</script>"
    console = [f"{script} <img src=x onerror=alert(1)>", "\x1b[31mred\x1b[0m \u202eevil\x07",
               marker("updates", "info", f"\"><svg onload=alert(1)> {script}")]
    report = dict(FAILED_REPORT, family=f"fam{script}", error=[f"guest: {script}"],
                  resources=[{"kind": "volume", "id": '"><b>id', "name": script, "step": "x",
                              "deleted": False, "kept": True}],
                  result="succeeded", exit_code=0,
                  image={"id": "img-1", "name": f"img {script}", "size": 5 << 30,
                         "properties": {"note": script, f"key{script}": "v"}})
    path = write_report(tmp_path / "b", report, console=console)
    page = render_build_html(path)
    tree = parse(page)
    assert active_content(tree) == []
    assert "\x1b" not in page and "\x07" not in page and "\u202e" not in page
    text = tree.text_content()
    assert f"fam{script}" in text_of(tree, "result")
    assert f"{script} <img src=x onerror=alert(1)>" in text
    assert "\\x1b[31mred\\x1b[0m \\u202eevil\\x07" in text
    assert f"\"><svg onload=alert(1)> {script}" in text
    assert script in text_of(tree, "properties") and "5.0 GiB" in text_of(tree, "image")
    # The page cannot load or run anything even if something slipped through.
    [csp] = tree.xpath('//meta[@http-equiv="Content-Security-Policy"]/@content')
    assert csp.startswith("default-src 'none'")


def test_secrets_never_show(tmp_path: Path) -> None:
    other_key = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
    console = [f"net user Admin {PASSWORD}", f"slmgr /ipk {PRODUCT_KEY}",
               f"activation with {other_key} failed",
               "AdministratorPassword=s3cr3t-in-a-log token: abc123def"]
    report = dict(FAILED_REPORT, error=[f"guest: could not set {PASSWORD}"],
                  result="succeeded", image={"id": "i", "name": "n", "properties": {
                      "admin_password": "prop-secret", "os_distro": "windows"}})
    path = write_report(tmp_path / "b", report, console=console)
    page = render_build_html(path, secrets=[PASSWORD, PRODUCT_KEY])
    for secret in (PASSWORD, PRODUCT_KEY, other_key, "s3cr3t-in-a-log", "abc123def",
                   "prop-secret", "admin_password"):
        assert secret not in page
    assert "net user Admin [redacted]" in parse(page).text_content()
    assert "os_distro" in page


def test_each_part_says_when_the_report_has_no_data_for_it(tmp_path: Path) -> None:
    minimal = {"build_id": BUILD_ID, "family": "f", "result": "failed", "exit_code": 2,
               "error": ["preflight: windows.iso_image: no image named x"]}
    tree = parse(render_build_html(write_report(tmp_path / "b", minimal)))
    assert "this report records no steps" in text_of(tree, "timeline")
    assert "no guest stage was reached" in text_of(tree, "timeline")
    assert "no console transcript: the builder never booted" in text_of(tree, "console")
    assert "does not list the resources" in text_of(tree, "resources")
    assert "has no API call counts" in text_of(tree, "api")
    assert "no image was published" in text_of(tree, "image")


def test_an_older_report_without_events_lays_steps_end_to_end(tmp_path: Path) -> None:
    older = {k: v for k, v in FAILED_REPORT.items() if k != "timeline"}
    tree = parse(render_build_html(write_report(tmp_path / "b", older)))
    assert "laid end to end from their durations" in text_of(tree, "timeline")
    assert table_rows(tree, "steps") == [["volumes", "0s", "1m40s", "ok"],
                                         ["boot", "1m40s", "1m40s", "ok"]]


def test_an_interrupted_build_says_so(tmp_path: Path) -> None:
    path = write_report(tmp_path / "b", exit_code=130, interrupted=True, failed_stage=None,
                        error=["interrupted by SIGINT; everything created was deleted"])
    tree = parse(render_build_html(path))
    assert text_of(tree, "outcome") == "interrupted"
    assert "SIGINT" in text_of(tree, "reason")


def test_the_page_is_written_beside_the_report_or_where_asked(tmp_path: Path) -> None:
    path = write_report(tmp_path / "b")
    assert write_build_html(path) == tmp_path / "b" / "report.html"
    elsewhere = write_build_html(path, out=tmp_path / "x.html")
    assert elsewhere.read_text().startswith("<!DOCTYPE html>")
    assert not list((tmp_path / "b").glob(".*.tmp"))


def test_each_page_redacts_its_own_build_secrets(tmp_path: Path) -> None:
    console = ["first-build-secret-1", "second-build-secret-2"]
    path = write_report(tmp_path / "b", console=console)
    first = render_build_html(path, secrets=["first-build-secret-1"])
    second = render_build_html(path, secrets=["second-build-secret-2"])
    assert "first-build-secret-1" not in first and "second-build-secret-2" in first
    assert "second-build-secret-2" not in second and "first-build-secret-1" in second


def test_the_page_says_what_kind_of_run_it_was(tmp_path: Path) -> None:
    image = {"id": "img-1", "name": "ws2022-x", "size": 1, "virtual_size": 2,
             "properties": {}}
    verified = write_report(tmp_path / "v", result="succeeded", exit_code=0, error=None,
                            failed_stage=None, image=image,
                            kind={"kind": "verify", "parent_image_id": None,
                                  "generation": None, "reason": "osbuild images verify"})
    tree = parse(render_build_html(verified))
    # `osbuild images verify` builds nothing: its page must not say "built image".
    assert text_of(tree, "kind").startswith("boot test of an existing image again")
    assert text_of(tree, "reason") == "image ws2022-x (img-1) passed its boot test again"
    # No builder: no builder's console, guest stages or boots to miss.
    timeline = text_of(tree, "timeline")
    assert "no guest stage was reached" not in timeline and "of the builder" not in timeline
    assert "builder" not in text_of(tree, "console")
    refreshed = write_report(tmp_path / "r", kind={"kind": "refresh", "parent_image_id": "p-1"})
    assert text_of(parse(render_build_html(refreshed)), "kind") == "refresh of image p-1"
    counted = write_report(tmp_path / "g", kind={"kind": "refresh", "parent_image_id": "p-1",
                                                "generation": 3})
    assert text_of(parse(render_build_html(counted)), "kind") == \
        "refresh of image p-1 (generation 3)"
    built = write_report(tmp_path / "f", result="succeeded", exit_code=0, error=None,
                         failed_stage=None, image=image, kind={"kind": "full"})
    tree = parse(render_build_html(built))
    assert text_of(tree, "kind").startswith("full build")
    assert text_of(tree, "reason") == "built image ws2022-x (img-1)"
    assert text_of(parse(render_build_html(write_report(tmp_path / "old"))), "kind") == "-"


def test_next_steps_follow_what_the_build_left() -> None:
    from osbuild.report.build import next_steps

    stuck = "volume 1d2e (osbuild-x-target)"
    assert next_steps({"leftovers": [stuck]}, "failed", []) == [
        "1 resource(s) the cloud would not delete are listed under Resources: delete them "
        "once it lets you, or run osbuild gc --older-than 0, which tries again"]
    promoted_refused = "image 9f3a (ws2022-std-20261202)"
    assert next_steps({"failed_stage": "promote"}, "failed", [promoted_refused]) == [
        "image 9f3a is verified and kept, hidden: osbuild images promote 9f3a makes it "
        "current once the reason above is dealt with",
        "nothing else of the build is left in the cloud: deal with the reason above, then "
        "run the build again"]
    # --keep-on-failure: the builder is there on purpose, so "nothing else is left" is not.
    assert next_steps({}, "failed", ["server 77 (osbuild-x-builder)"]) == [
        "what --keep-on-failure kept is listed under Resources: delete it when done looking"]
    assert next_steps({}, "succeeded", []) == next_steps({}, "skipped", []) == []
