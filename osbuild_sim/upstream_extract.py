"""Read Nova's or Cinder's request/response schemas out of their API controllers, as JSON.

Run in its own interpreter, one package per process (nova and cinder cannot be imported
together: their oslo.config options collide):

    python -m osbuild_sim.upstream_extract extract nova > nova.json
    python -m osbuild_sim.upstream_extract oracle nova < cases.json

``oracle`` validates a body with the upstream validator class itself; the tests use it to
prove that :mod:`osbuild_sim.upstream_schemas` gives the same answer.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from osbuild_sim.upstream_schemas import _CONTROLLERS, package_version

# Upstream format name -> parameter_types attribute holding its regex and reason (nova).
_NOVA_NAME_FORMATS = {
    "name": "valid_name_regex",
    "name_with_leading_trailing_spaces": "valid_name_leading_trailing_spaces_regex",
    "az_name": "valid_az_name_regex",
    "az_name_with_leading_trailing_spaces": "valid_az_name_leading_trailing_spaces_regex",
}


def _closure(fn: Callable[..., Any]) -> dict[str, Any]:
    cells = getattr(fn, "__closure__", None) or ()
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    out = {}
    for name, cell in zip(names, cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out


def _decorator_chain(fn: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """The closures of every wrapper around a controller method, outermost first."""
    seen: set[int] = set()
    current: Any = fn
    while callable(current) and id(current) not in seen:
        seen.add(id(current))
        cells = _closure(current)
        yield cells
        current = getattr(current, "__wrapped__", None) or cells.get("func")


def _version(value: Any) -> str | None:
    return None if value is None else str(value)


def schemas_of(fn: Callable[..., Any]) -> dict[str, list[dict[str, Any]]]:
    """Request and response schemas with their microversion ranges, outermost first."""
    found: dict[str, list[dict[str, Any]]] = {"request": [], "response": []}
    for cells in _decorator_chain(fn):
        for kind, key in (("request", "request_body_schema"), ("response", "response_body_schema")):
            if key in cells:
                found[kind].append(
                    {
                        "min": _version(cells.get("min_version")),
                        "max": _version(cells.get("max_version")),
                        "schema": cells[key],
                    }
                )
    return {kind: entries for kind, entries in found.items() if entries}


def _prepare(package: str) -> None:
    # Both services resolve their versioned objects at import time of the API modules.
    objects = importlib.import_module(f"{package}.objects")
    objects.register_all()


def extract(package: str) -> dict[str, Any]:
    _prepare(package)
    actions: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for plain, action_resource, target in _CONTROLLERS[package]:
        module_name, class_name = target.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        action_methods = {method: name for name, method in cls.wsgi_actions.items()}
        for attr, member in vars(cls).items():
            if not callable(member):
                continue
            found = schemas_of(member)
            if not found:
                continue
            if attr in action_methods and action_resource:
                actions[f"{action_resource}.action#{action_methods[attr]}"] = found
            else:
                actions[f"{plain}.{attr}"] = found
    validators = importlib.import_module(f"{package}.api.validation.validators")
    return {
        "package": package,
        "version": package_version(package),
        "draft": validators._SchemaValidator.validator_org.__name__,
        "actions": actions,
        "formats": _name_formats(package),
    }


def _name_formats(package: str) -> dict[str, dict[str, str]]:
    if package != "nova":
        # Cinder checks its name formats in code, not with a regex: not carried over.
        return {}
    from nova import exception
    from nova.api.validation import parameter_types

    out = {}
    for fmt, attr in _NOVA_NAME_FORMATS.items():
        rule = getattr(parameter_types, attr)
        message = exception.InvalidName(reason=rule.reason).format_message()
        out[fmt] = {"regex": rule.regex, "message": message}
    return out


def oracle(package: str, cases: list[dict[str, Any]]) -> list[str | None]:
    """The upstream validator's own verdict on each case (the first failing schema's text).

    A case is ``{"kind": "request"|"response", "action", "microversion", "body"}``.
    """
    from osbuild_sim.upstream_schemas import UpstreamSchemas, _version_tuple

    data = json.loads(json.dumps(extract(package), default=_jsonable))
    schemas = UpstreamSchemas.from_json(data)
    validators = importlib.import_module(f"{package}.api.validation.validators")
    verdicts: list[str | None] = []
    for case in cases:
        version = _version_tuple(case["microversion"])
        verdict = None
        for entry in schemas.actions.get(case["action"], {}).get(case["kind"], []):
            if not entry.matches(version):
                continue
            try:
                validators._SchemaValidator(entry.schema).validate(case["body"])
            except Exception as exc:
                # Nova's exceptions format with format_message(), Cinder's carry .msg.
                verdict = str(getattr(exc, "msg", None) or exc.format_message())  # type: ignore[attr-defined]
                break
        verdicts.append(verdict)
    return verdicts


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable in a schema: {value!r}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "extract":
        json.dump(extract(argv[1]), sys.stdout, default=_jsonable)
        return 0
    if len(argv) == 2 and argv[0] == "oracle":
        json.dump(oracle(argv[1], json.load(sys.stdin)), sys.stdout)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
