"""Input fingerprint: stable, sensitive to every input; the skip decision and its reasons."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from osbuild import naming, resources
from osbuild.spec import load_spec
from osbuild.unattended import fingerprint as fp

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
WIN = {"id": "img-win", "hash_algo": "sha512", "hash_value": "a" * 128, "checksum": "b" * 32}
VIRTIO = {"id": "img-virtio", "checksum": "c" * 32}


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    shutil.copy(resources.examples_dir() / "ws2022-standard.yaml", tmp_path / "spec.yaml")
    (tmp_path / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi v1")
    return tmp_path


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    (root / "scripts").mkdir(parents=True)
    (root / "autounattend.xml.j2").write_text("<unattend/>")
    (root / "scripts" / "firstlogon.ps1").write_text("Write-Host hi")
    return root


def _inputs(spec_dir: Path, templates: Path, **kw: object) -> fp.FingerprintInputs:
    return fp.inputs_for(
        load_spec(spec_dir / "spec.yaml"),
        windows_image=kw.get("windows", WIN),
        virtio_image=kw.get("virtio", VIRTIO),
        version=str(kw.get("version", "1.0.0")),
        templates_root=templates,
    )


def test_stable_and_records_every_input(spec_dir: Path, templates: Path) -> None:
    first = _inputs(spec_dir, templates)
    assert first.digest() == _inputs(spec_dir, templates).digest()
    assert len(first.digest()) == 64
    assert first.windows_iso == "sha512:" + "a" * 128
    assert first.virtio_iso == "md5:" + "c" * 32
    assert first.updates == "enabled:max_passes=3"
    props = first.properties()
    assert props[fp.PROP_FINGERPRINT] == first.digest()
    assert props["osbuild_input_cloudbase_msi"] == first.cloudbase_msi
    assert all(len(v) <= 255 for v in props.values())


def test_each_input_changes_the_fingerprint(spec_dir: Path, templates: Path) -> None:
    base = _inputs(spec_dir, templates).digest()
    variants = []
    (spec_dir / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi v2")
    variants.append(_inputs(spec_dir, templates))
    (spec_dir / "CloudbaseInitSetup_x64.msi").write_bytes(b"msi v1")
    variants.append(_inputs(spec_dir, templates, version="1.0.1"))
    variants.append(_inputs(spec_dir, templates, windows={**WIN, "hash_value": "d" * 128}))
    variants.append(_inputs(spec_dir, templates, virtio={"id": "x", "checksum": "e" * 32}))
    (templates / "scripts" / "firstlogon.ps1").write_text("Write-Host changed")
    variants.append(_inputs(spec_dir, templates))
    (templates / "scripts" / "firstlogon.ps1").write_text("Write-Host hi")
    text = (spec_dir / "spec.yaml").read_text()
    (spec_dir / "spec.yaml").write_text(text.replace("max_passes: 3", "max_passes: 4"))
    variants.append(_inputs(spec_dir, templates))
    digests = {v.digest() for v in variants}
    assert base not in digests and len(digests) == len(variants)
    assert _inputs(spec_dir, templates).updates == "enabled:max_passes=4"


def test_a_spec_change_names_its_sections(spec_dir: Path, templates: Path) -> None:
    # "inputs changed since ...: the spec" left an operator to diff specs by hand; which
    # sections changed is on the image beside the fingerprint (found from outside, s30).
    before = _inputs(spec_dir, templates)
    props = _props(before, NOW - timedelta(days=1))
    assert props[fp.PROP_SPEC_SECTIONS] == before.spec_sections
    assert "image:" in before.spec_sections and "windows:" in before.spec_sections
    text = (spec_dir / "spec.yaml").read_text()
    (spec_dir / "spec.yaml").write_text(text.replace("max_passes: 3", "max_passes: 4")
                                        .replace("min_ram: 4096", "min_ram: 8192"))
    after = _inputs(spec_dir, templates)
    skip, reason = fp.should_skip(props, after, None, True, NOW)
    assert not skip
    assert reason.endswith(": the spec (image, updates), the update settings"), reason
    # An image from before the property: just "the spec".
    older = {k: v for k, v in props.items() if k != fp.PROP_SPEC_SECTIONS}
    assert fp.should_skip(older, after, None, True, NOW)[1].endswith(
        ": the spec, the update settings")
    # Not an input: the fingerprint is what it was before the sections were recorded.
    assert before.digest() == hashlib.sha256(json.dumps(
        {"v": 1, **{k: v for k, v in dataclasses.asdict(before).items()
                    if k != "spec_sections"}},
        sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_a_renamed_template_changes_the_digest(templates: Path) -> None:
    before = fp.templates_digest(templates)
    (templates / "scripts" / "firstlogon.ps1").rename(templates / "scripts" / "other.ps1")
    assert fp.templates_digest(templates) != before


def _props(inputs: fp.FingerprintInputs, built: datetime, **extra: str) -> dict[str, object]:
    return {"name": "ws2022-std-20261120", **inputs.properties(),
            fp.PROP_BUILD_TIME: built.isoformat(), **extra}


def test_should_skip_identical_and_young(spec_dir: Path, templates: Path) -> None:
    inputs = _inputs(spec_dir, templates)
    props = _props(inputs, NOW - timedelta(days=2))
    skip, reason = fp.should_skip(props, inputs, 7 * 86400, False, NOW)
    assert skip and "same inputs" in reason and "ws2022-std-20261120" in reason
    # the bare digest works too
    assert fp.should_skip(props, inputs.digest(), None, False, NOW)[0]


def test_should_not_skip_and_says_what_changed(spec_dir: Path, templates: Path) -> None:
    old = _inputs(spec_dir, templates)
    props = _props(old, NOW - timedelta(days=1))
    new = replace(old, virtio_iso="md5:" + "f" * 32)
    skip, reason = fp.should_skip(props, new, None, False, NOW)
    assert not skip and "the VirtIO ISO image" in reason and "the spec" not in reason

    assert fp.should_skip(None, old, None, False, NOW) == (False, "no current image of this family")
    no_fp = {k: v for k, v in props.items() if k != fp.PROP_FINGERPRINT}
    assert "no input fingerprint" in fp.should_skip(no_fp, old, None, False, NOW)[1]
    failed = {**props, fp.PROP_VERIFY: "failed"}
    assert "failed verification" in fp.should_skip(failed, old, None, False, NOW)[1]


def test_age_forces_rebuild(spec_dir: Path, templates: Path) -> None:
    inputs = _inputs(spec_dir, templates)
    old = _props(inputs, NOW - timedelta(days=10))
    skip, reason = fp.should_skip(old, inputs, 7 * 86400, False, NOW)
    assert not skip and "10d" in reason and "image.max_age" in reason
    # no max_age and no updates: the image never ages out
    assert fp.should_skip(old, inputs, None, False, NOW)[0]
    # updates enabled: a default age limit applies, so patches are picked up
    skip, reason = fp.should_skip(old, inputs, None, True, NOW)
    assert not skip and "updates enabled" in reason
    young = _props(inputs, NOW - timedelta(days=1))
    assert fp.should_skip(young, inputs, None, True, NOW)[0]
    # Glance's created_at is the fallback for the build time
    created = {k: v for k, v in old.items() if k != fp.PROP_BUILD_TIME}
    created["created_at"] = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fp.should_skip(created, inputs, 7 * 86400, False, NOW)[0]


def test_a_weekly_schedule_rebuilds_every_week(spec_dir: Path, templates: Path) -> None:
    # The age counts from the build's start (its id) and the image is due a little before
    # max_age: measured from publication, a weekly cron found last week's refresh "6d23h
    # old, under 7d" and skipped every other week (found from outside, session 30).
    inputs = _inputs(spec_dir, templates)
    week = 7 * 86400

    def made(started: timedelta, took: timedelta) -> dict[str, object]:
        build_id = naming.new_build_id(NOW - started)
        return _props(inputs, NOW - started + took, **{naming.PROP_BUILD_ID: build_id})

    skip, reason = fp.should_skip(made(timedelta(days=7), timedelta(minutes=47)), inputs,
                                  week, False, NOW)
    assert not skip and "old, older than 6d22h (image.max_age: 7d less 2h for a schedule's " \
        "jitter)" in reason, reason
    # systemd's RandomizedDelaySec=1h: this week's run an hour earlier than last week's
    assert not fp.should_skip(made(timedelta(days=7) - timedelta(hours=1), timedelta(hours=1)),
                              inputs, week, False, NOW)[0]
    # a run in between (by hand, or a daily timer) still skips a young image
    skip, reason = fp.should_skip(made(timedelta(days=6, hours=21), timedelta(hours=1)), inputs,
                                  week, False, NOW)
    assert skip and reason.endswith("is 6d21h old (under 6d22h: 7d less 2h)"), reason
    # a short limit keeps a tenth as slack, not two hours
    assert fp.due_at(30.0) == 27.0 and fp.due_at(week) == week - 7200


def test_image_checksum_fallbacks() -> None:
    assert fp.image_checksum({"id": "x", "checksum": "1" * 32}) == "md5:" + "1" * 32
    assert fp.image_checksum({"id": "x"}) == "id:x"


def test_where_a_build_runs_and_whom_it_tells_is_no_input(spec_dir: Path) -> None:
    import yaml

    path = spec_dir / "spec.yaml"
    base = yaml.safe_load(path.read_text())

    def digest(**changes: object) -> str:
        data = {**base, **changes}
        path.write_text(yaml.safe_dump(data))
        return fp.spec_inputs_digest(load_spec(path))

    plain = digest()
    image = dict(base["image"])
    same = [
        digest(notify={"url": "https://hooks.example/osbuild", "on": ["failure", "success"]}),
        digest(clouds=["east", "west"]),
        digest(refresh={"max_generations": 2}),
        digest(image={**image, "keep": 7, "max_age": "90d", "superseded": "delete"}),
        digest(updates={**base.get("updates", {}), "enabled": True}),  # the default, spelt out
    ]
    assert same == [plain] * len(same)
    # What is installed, or how the image is named and shown, still counts.
    assert digest(hygiene={"zero_free_space": False}) != plain
    assert digest(image={**image, "visibility": "shared"}) != plain
