"""Windows Update's work grows with how far behind the installed patch level is
(osbuild_sim/servicing.py): years-old GA media pay the cumulative update's whole staging, last
month's image a month's share."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from osbuild import markers
from osbuild.media.render import refresh_user_data
from osbuild_sim import servicing
from osbuild_sim.guest import ConsoleOutput, GuestEvent, Metadata, boot
from tests.sim.test_guest import NONCE, disk_writes, load_example, machine_for, render
from tests.sim.test_guest_refresh import _installed, _refresh_machine

SERVER_2022_GA = datetime(2021, 8, 18, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _timed_markers(events: list[GuestEvent]) -> list[tuple[float, markers.Marker]]:
    out = []
    for event in events:
        if isinstance(event.action, ConsoleOutput):
            out += [(event.at, m) for m in markers.parse_lines([event.action.text], NONCE)]
    return out


def _first_pass_seconds(events: list[GuestEvent]) -> float:
    """From the updates stage's start to its first pass that installed something."""
    timed = _timed_markers(events)
    start = next(t for t, m in timed if m.stage == "updates" and m.status.value == "start")
    done = next(t for t, m in timed if m.stage == "updates" and "result code" in m.detail)
    return done - start


def _full_build(tmp_path: Path, started: datetime) -> list[GuestEvent]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = load_example(tmp_path, "ws2022-standard.yaml")
    rendered = render(spec, tmp_path / "out")
    machine = machine_for(spec, rendered.iso_path.read_bytes())
    return list(boot(machine, rng=random.Random(7), started_at=started))


def test_the_differing_share_grows_fast_then_levels_out() -> None:
    shares = [servicing.differing_share(m) for m in (1, 6, 12, 24, 64)]
    assert shares == sorted(shares)
    assert shares[0] < 0.1 and shares[-1] > 0.99
    # Growth slows: the second year adds less than the first.
    assert shares[3] - shares[2] < shares[2] - 0.0
    # A pass that finds something finds at least a month's update.
    assert servicing.months_behind(NOW, NOW) == 1.0
    assert servicing.months_behind(SERVER_2022_GA, NOW) == pytest.approx(63.5, abs=0.5)


def test_a_fresh_install_starts_from_the_media_patch_level(tmp_path: Path) -> None:
    events = _full_build(tmp_path, NOW)
    installed = disk_writes(events)[0]
    assert installed["updated_at"] == SERVER_2022_GA.isoformat()
    # The updates stage moves the patch level to when it finished.
    final = disk_writes(events)[-1]
    assert datetime.fromisoformat(str(final["updated_at"])) > NOW


def test_old_media_pay_the_whole_cumulative_update_new_media_a_share(tmp_path: Path) -> None:
    years_later = _first_pass_seconds(_full_build(tmp_path / "late", NOW))
    at_release = _first_pass_seconds(_full_build(tmp_path / "early",
                                                 SERVER_2022_GA + timedelta(days=20)))
    # More than five years after Server 2022's GA: staging alone is at least its full low
    # bound times the share (0.99) a 63-month gap lacks.
    assert years_later > servicing.FULL_STAGING[0] * 0.99
    # The same media in their first month: the month's share only.
    assert at_release < servicing.FULL_STAGING[1] * servicing.differing_share(1) + 600
    assert years_later > 2 * at_release


def test_a_refresh_a_month_on_pays_a_months_share(tmp_path: Path) -> None:
    full = _first_pass_seconds(_full_build(tmp_path / "full", NOW))
    machine = _refresh_machine(tmp_path, _installed(updated_at=NOW.isoformat()))
    refresh_events = list(boot(machine, rng=random.Random(7), started_at=NOW + timedelta(days=30),
                               metadata=Metadata(user_data=refresh_user_data().encode())))
    refresh = _first_pass_seconds(refresh_events)
    assert refresh < full / 2
    # And it writes less: a month's components, not five years'.
    assert _installed_bytes(refresh_events) < _installed_bytes(
        _full_build(tmp_path / "full2", NOW)) / 2


def _installed_bytes(events: list[GuestEvent]) -> int:
    """What update passes installed, as the final disk record counts it (the parent record
    of a refresh here carries none)."""
    files = disk_writes(events)[-1]["disk"]["files"]  # type: ignore[index]
    return int(files.get("installed", 0))
