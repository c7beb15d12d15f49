"""Building report.json folders by hand, and reading the HTML pages back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from lxml import html as lxml_html

BUILD_ID = "20261126t031500-a1b2c3"
NONCE = "4e9fa7ba1be149b2c35f31c4bc5f5fa8"


def marker(stage: str, status: str, detail: str = "") -> str:
    return f"OSBUILD:{NONCE}:{stage}:{status}" + (f":{detail}" if detail else "")


# What a failed build's report.json holds (the shape osbuild.pipeline.run writes).
FAILED_REPORT: dict[str, Any] = {
    "osbuild_version": "0.1.0",
    "build_id": BUILD_ID,
    "family": "ws2022-standard",
    "cloud": "east",
    "started": "2026-11-26T03:15:00+00:00",
    "finished": "2026-11-26T04:15:00+00:00",
    "duration_seconds": 3600.0,
    "result": "failed",
    "error": ["cloudbaseinit: the guest reported a failure: msiexec exited 1603"],
    "failed_stage": "cloudbaseinit",
    "interrupted": False,
    "exit_code": 1,
    "inputs": {"spec": "/nowhere/ws2022.yaml"},
    "image": None,
    "verify": None,
    "promotion": {"promoted": False, "name": None},
    "skipped": None,
    "resources": [
        {"kind": "volume", "id": "vol-1", "name": f"osbuild-{BUILD_ID}-iso", "step": "volumes",
         "deleted": True, "kept": False},
        {"kind": "server", "id": "srv-1", "name": f"osbuild-{BUILD_ID}-builder",
         "step": "boot", "deleted": True, "kept": False},
    ],
    "leftovers": [],
    "kept_for_debugging": [],
    "stages": [
        {"stage": "winpe", "started": 300.0, "finished": 900.0, "status": "ok", "detail": ""},
        {"stage": "updates", "started": 1000.0, "finished": 2000.0, "status": "ok",
         "detail": ""},
        {"stage": "cloudbaseinit", "started": 2100.0, "finished": 2400.0, "status": "failed",
         "detail": "msiexec exited 1603"},
    ],
    "step_timings": {"volumes": 100.0, "boot": 100.0},
    "timeline": [
        {"at": 0.0, "event": "step.started", "during": "volumes", "step": "volumes"},
        {"at": 50.0, "event": "resource.created", "during": "volumes", "kind": "volume",
         "id": "vol-1", "name": f"osbuild-{BUILD_ID}-iso"},
        {"at": 100.0, "event": "step.finished", "during": "volumes", "step": "volumes"},
        {"at": 100.0, "event": "step.started", "during": "boot", "step": "boot"},
        {"at": 150.0, "event": "resource.created", "during": "boot", "kind": "server",
         "id": "srv-1", "name": f"osbuild-{BUILD_ID}-builder"},
        {"at": 200.0, "event": "step.finished", "during": "boot", "step": "boot"},
        {"at": 200.0, "event": "step.started", "during": "install", "step": "install"},
        {"at": 300.0, "event": "stage", "during": "install", "stage": "winpe",
         "status": "start", "detail": ""},
        {"at": 900.0, "event": "stage", "during": "install", "stage": "winpe",
         "status": "ok", "detail": ""},
        {"at": 1500.0, "event": "stage", "during": "install", "stage": "updates",
         "status": "info", "detail": "pass 1/3: 11 updates, result code 2"},
        {"at": 1600.0, "event": "stage", "during": "install", "stage": "updates",
         "status": "info", "detail": "resumed after reboot"},
        {"at": 1800.0, "event": "stage", "during": "install", "stage": "updates",
         "status": "info", "detail": "pass 2/3: 3 updates, result code 2"},
        {"at": 2400.0, "event": "stage", "during": "install", "stage": "cloudbaseinit",
         "status": "fail", "detail": "msiexec exited 1603"},
        {"at": 2450.0, "event": "resource.deleted", "during": "cleanup", "kind": "server",
         "id": "srv-1", "name": f"osbuild-{BUILD_ID}-builder"},
        {"at": 2500.0, "event": "resource.deleted", "during": "cleanup", "kind": "volume",
         "id": "vol-1", "name": f"osbuild-{BUILD_ID}-iso"},
    ],
    "api_calls": {"compute GET": 40, "compute POST": 3, "image GET": 5,
                  "block-storage POST": 2},
    "console": {"polls": 10, "bytes_fetched": 1000, "transcript": "/gone/console.log"},
}

CONSOLE = [
    "SeaBIOS (version 1.16.3-debian-1.16.3-2)",
    "Booting from DVD/CD...",
    marker("winpe", "start"),
    marker("winpe", "ok"),
    "SeaBIOS (version 1.16.3-debian-1.16.3-2)",
    marker("updates", "info", "pass 1/3: 11 updates, result code 2"),
    marker("cloudbaseinit", "fail", "msiexec exited 1603"),
]


def write_report(folder: Path, report: dict[str, Any] | None = None,
                 console: list[str] | None = None, **changes: Any) -> Path:
    """A build folder with report.json (FAILED_REPORT with ``changes``) and console.log."""
    folder.mkdir(parents=True, exist_ok=True)
    data = copy.deepcopy(FAILED_REPORT if report is None else report)
    data.update(changes)
    path = folder / "report.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    if console is not None:
        (folder / "console.log").write_text("".join(f"{line}\n" for line in console),
                                            encoding="utf-8")
    return path


def parse(page: str) -> Any:
    return lxml_html.fromstring(page)


def text_of(tree: Any, css_id: str) -> str:
    """The text of the element with this id, whitespace collapsed."""
    [element] = tree.xpath(f'//*[@id="{css_id}"]')
    return " ".join(element.text_content().split())


def active_content(tree: Any) -> list[str]:
    """Everything in a page that a browser would run or fetch: must be empty."""
    found = [f"<{e.tag}>" for e in tree.iter()
             if isinstance(e.tag, str) and e.tag in ("script", "iframe", "object", "embed",
                                                     "img", "link", "base", "form")]
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if name.lower().startswith("on") or name.lower() in ("src", "href", "xlink:href"):
                found.append(f"<{element.tag} {name}={value!r}>")
    return found


def table_rows(tree: Any, css_id: str) -> list[list[str]]:
    """The cells of the table (or the tables inside the element) with this id, header left out."""
    [element] = tree.xpath(f'//*[@id="{css_id}"]')
    rows = element.xpath(".//tr[td]") if element.tag != "tr" else [element]
    return [[" ".join(cell.text_content().split()) for cell in row.xpath("./td|./th")]
            for row in rows]
