"""The spec's verify section and the image members field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from osbuild.errors import SpecError
from osbuild.spec import parse_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "builds" / "ws2022-standard.yaml"


def _spec(**sections: dict[str, object]) -> str:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    # An https MSI needs no local file.
    data["cloudbase_init"] = {"msi": "https://example.invalid/cb.msi", "sha256": "a" * 64}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return yaml.safe_dump(data, sort_keys=False)


def test_verify_defaults_to_on_with_the_builder_stage_timeout() -> None:
    spec = parse_spec(_spec(builder={"stage_timeouts": {"verify": "45m"}}))
    assert spec.verify.enabled and spec.verify.on_failure == "hide"
    assert not spec.verify.boot_from_volume
    assert spec.verify_timeout == 45 * 60


def test_verify_timeout_overrides_the_stage_timeout() -> None:
    spec = parse_spec(_spec(verify={"timeout": "10m", "flavor": "m1.small"}))
    assert spec.verify_timeout == 600 and spec.verify.flavor == "m1.small"


def test_bad_regex_is_reported_with_its_field() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(verify={"console_must_match": ["ok", "(unclosed"]}))
    message = " ".join(caught.value.lines())
    assert "verify.console_must_match" in message and "(unclosed" in message


def test_on_failure_takes_only_hide_or_delete() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(verify={"on_failure": "keep"}))
    assert "verify.on_failure" in " ".join(caught.value.lines())


def test_members_need_a_shared_image() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(image={"members": ["project-a"]}))
    assert "members" in " ".join(caught.value.lines())
    spec = parse_spec(_spec(image={"members": ["project-a"], "visibility": "shared"}))
    assert spec.image.members == ("project-a",)
