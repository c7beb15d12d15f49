"""Event names are declared once (EventName), every emitter uses the declaration, and the
README's `--json` event table lists exactly the declared names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from osbuild.pipeline.events import Event, EventName

ROOT = Path(__file__).resolve().parents[2]
# The product only: the simulator (osbuild_sim) and the test helpers emit no build events.
PRODUCT = ROOT / "osbuild"


def _event_name_arguments() -> list[tuple[str, ast.expr]]:
    """The first argument of every ``*.emit(...)`` and ``Event(...)`` call in the product."""
    found = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("emit", "Event"):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.append((where, node.args[0]))
    return found


def _declared_members(expr: ast.expr) -> list[str] | None:
    """The EventName members an argument names, or None when it is anything else."""
    if isinstance(expr, ast.IfExp):
        body, orelse = _declared_members(expr.body), _declared_members(expr.orelse)
        return None if body is None or orelse is None else body + orelse
    if (isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name)
            and expr.value.id == "EventName"):
        return [expr.attr]
    return None


def test_every_emitted_event_name_is_declared() -> None:
    calls = _event_name_arguments()
    assert len(calls) > 20  # the scan finds the emitters
    wrong = []
    for where, expr in calls:
        members = _declared_members(expr)
        if where.startswith("osbuild/pipeline/context.py") and isinstance(expr, ast.Name):
            continue  # BuildContext.emit forwards its (typed) argument
        if members is None or any(m not in EventName.__members__ for m in members):
            wrong.append(f"{where}: {ast.unparse(expr)}")
    assert not wrong, "emit EventName members, not strings: " + "; ".join(wrong)


def test_no_event_name_is_spelled_as_a_string_outside_its_declaration() -> None:
    # A webhook payload or a renderer comparing names must use EventName too.
    dotted = {e.value for e in EventName if "." in e.value}
    spelled = []
    for path in sorted(PRODUCT.rglob("*.py")):
        if path.name == "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in dotted:
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not spelled, "use EventName, not strings: " + "; ".join(spelled)


def test_every_declared_event_is_emitted_somewhere() -> None:
    emitted = {m for _where, expr in _event_name_arguments()
               for m in _declared_members(expr) or []}
    assert set(EventName.__members__) - emitted == set()


def test_the_readme_event_table_lists_exactly_the_declared_names() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- events -->", 1)[1].split("<!-- /events -->", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines()
                   if line.startswith("| `")]
    listed = [name for cell in first_cells for name in re.findall(r"`([a-z.]+)`", cell)]
    assert sorted(listed) == sorted(e.value for e in EventName)
    assert len(listed) == len(set(listed))


def test_json_carries_the_plain_name() -> None:
    event = Event(EventName.BUILD_SKIPPED, "b1", "fam", {"reason": "busy"})
    assert event.as_json()["event"] == "build.skipped"
    assert type(event.as_json()["event"]) is str


def test_the_bus_redacts_what_the_process_knows() -> None:
    """Events published outside a build's context (a build that never started) too."""
    from osbuild import redact
    from osbuild.pipeline.events import EventBus

    secret = "bus-test-credential-42"
    redact.remember(secret)
    seen: list[Event] = []
    bus = EventBus()
    bus.subscribe(seen.append)
    bus.publish(Event(EventName.BUILD_FAILED, "b", "f",
                      {"reason": f"auth: {secret}", "details": [secret], "exit_code": 2}))
    assert seen[0].fields == {"reason": f"auth: {redact.REDACTED}",
                              "details": [redact.REDACTED], "exit_code": 2}


def test_a_failing_listener_is_dropped_and_the_others_still_hear() -> None:
    # The runner's cleanup emits an event per deleted resource: a listener that raises (a
    # closed pipe) once stopped the cleanup at the first one.
    from osbuild.pipeline.events import EventBus

    heard: list[str] = []

    def broken(event: Event) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    bus = EventBus()
    bus.subscribe(broken)
    bus.subscribe(lambda event: heard.append(event.fields["id"]))
    for volume in ("v1", "v2"):
        bus.publish(Event(EventName.RESOURCE_DELETED, "b", "f", {"kind": "volume", "id": volume}))
    assert heard == ["v1", "v2"]


def test_the_views_outlive_a_closed_pipe() -> None:
    import io

    from osbuild.cli.output import HumanView, JsonLines, ViewConsole

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    event = Event(EventName.STEP_STARTED, "b", "f", {"step": "install"})
    JsonLines(Closed())(event)  # no exception
    view = HumanView(ViewConsole(file=Closed(), force_terminal=False))
    view(event)  # not rich's default: SystemExit(1), and stdout pointed at /dev/null
    view(event)
