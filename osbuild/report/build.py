"""One build's HTML report, drawn from its report.json and console transcripts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osbuild.durations import format_duration
from osbuild.errors import InvalidInput
from osbuild.pipeline.events import EventName
from osbuild.redact import Redactor
from osbuild.report.console import ConsoleView, read_console
from osbuild.report.pages import render_page
from osbuild.report.timeline import Timeline, build_timeline

HTML_NAME = "report.html"


def load_report(path: Path) -> dict[str, Any]:
    """A report.json as a dict; an unreadable or foreign file is invalid input (exit 2)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput([f"{path}: cannot read the report: {exc.strerror or exc}"]) from None
    except ValueError as exc:
        raise InvalidInput([f"{path}: not a JSON build report: {exc}"]) from None
    if not isinstance(data, dict) or "build_id" not in data:
        raise InvalidInput([f"{path}: not an osbuild build report (no build_id)"])
    return data


@dataclass
class Resource:
    kind: str
    id: str
    name: str
    step: str
    created_at: float | None
    deleted_at: float | None
    fate: str  # deleted, kept, left behind


@dataclass
class ServiceCalls:
    service: str
    total: int
    methods: dict[str, int]
    width: float = 0.0  # of the bar, 0..100 (% of the busiest service)


@dataclass
class BuildPage:
    outcome: str  # succeeded, failed, interrupted, skipped
    reason: list[str]
    timeline: Timeline
    consoles: list[ConsoleView]
    resources: list[Resource] | None
    api_calls: list[ServiceCalls] | None
    image: dict[str, Any] | None
    image_properties: dict[str, Any]
    kind: str = "-"  # what the run was: a full build, a refresh, a boot test again
    resumed: str | None = None  # `osbuild resume` finished it: when, and how long it took
    # What the build kept: a verified image a failed promotion left hidden (no debugging
    # aid), and the rest (--keep-on-failure), as the CLI's summary tells them apart.
    kept_images: list[str] = field(default_factory=list)
    kept_other: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)  # a build that did not succeed


def resumed_of(report: dict[str, Any]) -> str | None:
    """``resumed at T by osbuild resume, which took 41m11s``; None: not resumed."""
    resumed = report.get("resumed")
    if not isinstance(resumed, dict):
        return None
    took = resumed.get("duration_seconds")
    took_text = (f", which took {format_duration(max(took, 0))}"
                 if isinstance(took, int | float) else "")
    return f"resumed at {resumed.get('at') or '?'} by osbuild resume{took_text}"


def kind_of(report: dict[str, Any]) -> str:
    """The run's kind (report.json ``kind``) as the page says it; "-" when not recorded."""
    entry = report.get("kind")
    entry = entry if isinstance(entry, dict) else {}
    kind = entry.get("kind")
    if kind == "full":
        return "full build (Windows installed from the ISOs)"
    if kind == "refresh":
        # Reports written before generations were numbers hold them as strings.
        generation = str(entry.get("generation", ""))
        counted = f" (generation {generation})" if generation.isdigit() else ""
        return f"refresh of image {entry.get('parent_image_id') or '?'}{counted}"
    if kind == "verify":
        return "boot test of an existing image again (osbuild images verify), not a build"
    return str(kind) if kind else "-"


def outcome_of(report: dict[str, Any]) -> str:
    if report.get("skipped"):
        return "skipped"
    if report.get("interrupted") or report.get("exit_code") == 130:
        return "interrupted"
    return "succeeded" if report.get("result") == "succeeded" else "failed"


def _resources(report: dict[str, Any]) -> list[Resource] | None:
    items = report.get("resources")
    if not isinstance(items, list):
        return None
    created: dict[tuple[str, str], float] = {}
    deleted: dict[tuple[str, str], float] = {}
    for entry in report.get("timeline") or []:
        key = (str(entry.get("kind")), str(entry.get("id")))
        if entry.get("event") in (EventName.RESOURCE_CREATED, EventName.RESOURCE_ADOPTED):
            created.setdefault(key, entry.get("at", 0.0))
        elif entry.get("event") == EventName.RESOURCE_DELETED:
            deleted[key] = entry.get("at", 0.0)
    leftovers = " ".join(report.get("leftovers") or [])
    out = []
    for item in items:
        key = (str(item.get("kind")), str(item.get("id")))
        if item.get("deleted"):
            fate = "deleted"
        elif item.get("id") and str(item["id"]) in leftovers:
            fate = "left behind"
        else:
            fate = "kept"
        out.append(Resource(kind=key[0], id=key[1], name=str(item.get("name") or ""),
                            step=str(item.get("step") or ""), created_at=created.get(key),
                            deleted_at=deleted.get(key), fate=fate))
    return out


def _api_calls(report: dict[str, Any]) -> list[ServiceCalls] | None:
    calls = report.get("api_calls")
    if not isinstance(calls, dict) or not calls:
        return None
    services: dict[str, ServiceCalls] = {}
    for key, count in calls.items():
        service, _, method = str(key).partition(" ")
        entry = services.setdefault(service, ServiceCalls(service, 0, {}))
        entry.total += int(count)
        entry.methods[method or "?"] = int(count)
    busiest = max(s.total for s in services.values()) or 1
    for entry in services.values():
        entry.width = round(100.0 * entry.total / busiest, 1)
    return sorted(services.values(), key=lambda s: (-s.total, s.service))


def build_page(report: dict[str, Any], report_dir: Path, redactor: Redactor) -> BuildPage:
    outcome = outcome_of(report)
    error = report.get("error") or []
    reason = [str(line) for line in error] if isinstance(error, list) else [str(error)]
    if outcome == "skipped":
        reason = [str(report["skipped"])]
    image = report.get("image") if isinstance(report.get("image"), dict) else None
    properties = redactor.mapping((image or {}).get("properties") or {})
    consoles = [view for view in (
        read_console(report_dir, report, "console.log", "builder", failure_lines=reason),
        read_console(report_dir, report, "verify-console.log", "boot test",
                     failure_lines=reason),
    ) if view is not None]
    builder = consoles[0].lines if consoles and consoles[0].title == "builder" else []
    kept = [str(k) for k in report.get("kept_for_debugging") or []]
    return BuildPage(
        outcome=outcome, reason=reason,
        timeline=build_timeline(report, [(line.kind, line.marker) for line in builder]),
        consoles=consoles,
        resources=_resources(report), api_calls=_api_calls(report),
        image=image, image_properties=dict(sorted(properties.items())),
        kind=kind_of(report), resumed=resumed_of(report),
        kept_images=[k for k in kept if k.startswith("image ")],
        kept_other=[k for k in kept if not k.startswith("image ")],
        next_steps=next_steps(report, outcome, kept),
    )


_IMAGE_ID = re.compile(r"^image (\S+) ")


def next_steps(report: dict[str, Any], outcome: str, kept: list[str]) -> list[str]:
    """What the operator does after a build that did not succeed, from what it left."""
    if outcome in ("succeeded", "skipped"):
        return []
    steps = []
    leftovers = report.get("leftovers") or []
    if leftovers:
        steps.append(f"{len(leftovers)} resource(s) the cloud would not delete are listed "
                     "under Resources: delete them once it lets you, or run osbuild gc "
                     "--older-than 0, which tries again")
    for line in kept:
        found = _IMAGE_ID.match(line)
        if found is None:
            continue
        image_id = found[1]
        if report.get("failed_stage") == "verify":
            steps.append(f"image {image_id} is kept, hidden: osbuild images verify {image_id} "
                         f"tests it again (a boot test that failed for a cloud reason), then "
                         f"osbuild images promote {image_id} makes it current")
        else:
            steps.append(f"image {image_id} is verified and kept, hidden: osbuild images "
                         f"promote {image_id} makes it current once the reason above is dealt "
                         "with")
    debugging = any(not k.startswith("image ") for k in kept)
    if debugging:
        steps.append("what --keep-on-failure kept is listed under Resources: delete it when "
                     "done looking")
    if not leftovers and not debugging:
        again = ("run the same command again" if outcome == "interrupted"
                 else "deal with the reason above, then run the build again")
        steps.append(f"nothing else of the build is left in the cloud: {again}")
    return steps


def render_build_html(report_path: Path, *,
                      secrets: Iterable[str | None] | Redactor = ()) -> str:
    """The page; ``secrets``: the build's values (or its redactor) to take out."""
    report = load_report(report_path)
    redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)
    page = build_page(report, report_path.parent, redactor)
    return render_page("build.html.j2", redactor, page=page, r=report)


def write_build_html(report_path: Path, *, secrets: Iterable[str | None] | Redactor = (),
                     out: Path | None = None) -> Path:
    """Write the page (default: ``report.html`` beside the report) and return its path."""
    html = render_build_html(report_path, secrets=secrets)
    out = out or report_path.with_name(HTML_NAME)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
