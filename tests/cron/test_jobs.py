"""Which (spec, cloud) builds a command line makes, and how the flags parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from osbuild.cli import build_parser
from osbuild.resources import examples_dir
from osbuild.spec import load_spec
from osbuild.unattended.jobs import default_log_dir, plan_jobs


def _spec(tmp_path: Path, name: str, **changes: object) -> Path:
    data = yaml.safe_load((examples_dir() / "ws2022-standard.yaml").read_text())
    data.update(name=name, **changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi")
    return path


def test_spec_clouds_unless_the_command_line_names_clouds(tmp_path: Path) -> None:
    multi = load_spec(_spec(tmp_path, "multi", clouds=["a", "b", "a"]))
    plain = load_spec(_spec(tmp_path, "plain"))
    jobs = plan_jobs(specs=[multi, plain], clouds=None)
    assert [(j.spec.name, j.cloud) for j in jobs] == [("multi", "a"), ("multi", "b"),
                                                      ("plain", None)]
    jobs = plan_jobs(specs=[multi, plain], clouds=["z"])
    assert [(j.spec.name, j.cloud) for j in jobs] == [("multi", "z"), ("plain", "z")]


def test_notify_url_must_be_http(tmp_path: Path) -> None:
    from osbuild.errors import SpecError

    with pytest.raises(SpecError, match=r"notify\.url"):
        load_spec(_spec(tmp_path, "bad", notify={"url": "file:///etc/passwd"}))


def test_wait_lock_takes_an_optional_duration() -> None:
    parse = build_parser().parse_args
    assert parse(["build", "s.yaml"]).wait_lock is None
    assert parse(["build", "s.yaml", "--wait-lock"]).wait_lock == 6 * 3600
    assert parse(["build", "s.yaml", "--wait-lock", "90m"]).wait_lock == 5400


def test_log_dir_defaults_beside_the_state(tmp_path: Path) -> None:
    assert default_log_dir(tmp_path) == tmp_path / "builds"
