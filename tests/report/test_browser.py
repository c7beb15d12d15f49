"""Both pages in a real headless browser (Debian's chromium): they load without a console
error and without any network request, and a screenshot of each is kept as a test artifact."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osbuild.cli import main
from osbuild.report.build import write_build_html
from tests.e2e.conftest import Cloud
from tests.support.artifacts import artifacts_dir

from .helpers import CONSOLE, FAILED_REPORT, marker, write_report

pytestmark = pytest.mark.slow

SCRIPT = "<script>alert('x')</script><img src=http://192.0.2.1/beacon.png>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _load(browser: Any, page: Path, shot: str) -> dict[str, Any]:
    """Open ``page``; return its console messages and every URL it requested."""
    url = page.resolve().as_uri()
    browser.get_log("performance")  # forget what earlier pages did
    browser.set_window_size(1280, 600)  # the page's height, not the last window's
    browser.get(url)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(int(height), 600), 6000))
    screenshot = artifacts_dir("report") / shot
    assert browser.save_screenshot(str(screenshot))
    print(f"\nscreenshot: {screenshot}")
    requested = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            requested.append(message["params"].get("request", message["params"]).get("url"))
    return {"console": browser.get_log("browser"), "requested": requested, "url": url,
            "screenshot": screenshot}


def _assert_quiet(loaded: dict[str, Any]) -> None:
    assert loaded["console"] == []
    assert [u for u in loaded["requested"] if u != loaded["url"]] == []
    assert loaded["screenshot"].stat().st_size > 10_000


def test_a_real_build_report_and_the_status_page(browser: Any, cloud: Cloud) -> None:
    run = cloud.build(cloud.spec())
    assert run.exit_code == 0, run.why
    report_page = cloud.log_dir / run.success["build_id"] / "report.html"
    loaded = _load(browser, report_page, "build-report.png")
    _assert_quiet(loaded)
    assert browser.find_element("id", "outcome").text == "succeeded"
    assert browser.find_elements("css selector", "#timeline svg rect")

    status_page = cloud.workdir / "status.html"
    assert main(["status", "--os-cloud", cloud.sim.cloud_name, "--html", str(status_page)]) == 0
    loaded = _load(browser, status_page, "status.png")
    _assert_quiet(loaded)
    assert "ws2022-standard" in browser.find_element("id", "families").text


def test_hostile_text_runs_nothing_and_fetches_nothing(browser: Any, tmp_path: Path) -> None:
    report = dict(FAILED_REPORT, error=[f"guest: {SCRIPT}"])
    path = write_report(tmp_path / "b", report,
                        console=[*CONSOLE, SCRIPT, marker("cleanup", "fail", SCRIPT)])
    loaded = _load(browser, write_build_html(path), "hostile-report.png")
    _assert_quiet(loaded)  # an alert() would also have failed the screenshot
    assert SCRIPT in browser.find_element("id", "reason").text
