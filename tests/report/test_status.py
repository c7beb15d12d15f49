"""`osbuild status` against the simulated cloud: what it shows, and that it changes nothing."""

from __future__ import annotations

import io
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuild import naming
from osbuild.cli import main
from osbuild.cloud.clock import Clock
from osbuild.report.status import cloud_status, family_rows, last_build
from osbuild.report.status_page import render_status_html, status_table
from osbuild.report.trend import sparkline
from osbuild.unattended.state import BuildState, BuildStatus, StateStore
from tests.unattended.helpers import BOOT_IMAGE
from tests.unattended.helpers import image as _image
from tests.unattended.helpers import server as _server
from tests.unattended.helpers import volume as _volume

from .helpers import active_content, parse, table_rows, text_of

FAMILY = "ws2022"
HOSTILE = "msiexec <script>alert(1)</script> \x1b[2J"
DEAD = "20261126t010000-dead00"
# Builds another host runs now: this state folder does not know them.
ELSEWHERE = "20261126t050000-e15e00"
NEW_FAMILY = "20261126t050000-e15e01"
# Requests that change nothing: reading, and keystone handing out a token.
READ_ONLY = {"GET", "HEAD"}


def _published(conn: Any, name: str, version: str, verify: str, *, current: bool = False,
               hidden: bool = False, **lineage: str) -> Any:
    image = _image(conn, name, **{naming.PROP_FAMILY: FAMILY, naming.PROP_BUILD_ID: version,
                                  naming.PROP_IMAGE_VERSION: version,
                                  naming.PROP_VERIFY: verify, naming.PROP_ROLE: "image"},
                   **lineage)
    conn.image.add_tag(image, naming.TAG)
    if current:
        conn.image.add_tag(image, naming.CURRENT_TAG)
    if hidden:
        conn.image.update_image(image, is_hidden=True)
    return image


def _build(store: StateStore, logs: Path, build_id: str, family: str, status: BuildStatus,
           duration: float | None = None, error: str | None = None, kind: str = "full",
           **extra: Any) -> None:
    store.save(BuildState(build_id=build_id, family=family, cloud=extra.pop("cloud"),
                          nonce="0" * 32, spec_path="/s.yaml", spec_digest="d",
                          status=status, error=error, log_dir=str(logs), **extra))
    if duration is not None:
        (logs / build_id).mkdir(parents=True)
        (logs / build_id / "report.json").write_text(json.dumps(
            {"build_id": build_id, "duration_seconds": duration, "kind": {"kind": kind}}))


@pytest.fixture
def fleet(sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    conn = sim.connect()
    ids = {
        "old": _published(conn, "ws2022-old", "20261101t010000-000001", "passed",
                          hidden=True).id,
        "current": _published(conn, "ws2022-cur", "20261120t010000-000002", "passed",
                              current=True, **{naming.PROP_BUILD_KIND: "refresh",
                                               naming.PROP_PARENT: "p-1",
                                               naming.PROP_GENERATION: "2"}).id,
        "next": _published(conn, "ws2022-new", "20261125t010000-000003", "pending",
                           hidden=True).id,
    }
    ids["leftover"] = _volume(conn, DEAD, "iso").id
    store = StateStore(tmp_path / "state")
    logs = tmp_path / "logs"
    cloud = {"cloud": sim.cloud_name}
    # A refresh takes a fraction of a full build: not in the full builds' trend.
    _build(store, logs, "20261118t010000-000018", FAMILY, BuildStatus.SUCCEEDED, 1500.0,
           kind="refresh", **cloud)
    for day, seconds in ((20, 3600.0), (21, 5400.0), (22, 4000.0)):
        _build(store, logs, f"202611{day}t010000-00000{day - 19}", FAMILY,
               BuildStatus.SUCCEEDED, seconds, **cloud)
    # Abandoned by gc: no report, only its state's span (a day).
    _build(store, logs, "20261119t010000-0000cc", FAMILY, BuildStatus.FAILED,
           error="abandoned", started_at=datetime.now(UTC) - timedelta(days=2),
           updated_at=datetime.now(UTC) - timedelta(days=1), **cloud)
    # Neither a failure nor a Ctrl-C at the claim says how long a build takes.
    _build(store, logs, "20261122t020000-00000c", FAMILY, BuildStatus.INTERRUPTED, 4.0,
           error="interrupted by SIGINT", **cloud)
    _build(store, logs, "20261123t010000-0000ff", FAMILY, BuildStatus.FAILED, 600.0,
           error="cloudbaseinit: the guest reported a failure", **cloud)
    _build(store, logs, "20261124t010000-000aaa", "ws2019", BuildStatus.FAILED, 120.0,
           error=HOSTILE, **cloud)
    # A dead build on this host (its process is gone): gc would remove what it left.
    _build(store, logs, DEAD, FAMILY, BuildStatus.RUNNING, pid=2 ** 22 + 1, step="install",
           steps_done=["preflight", "upload_media", "boot_builder"], **cloud)
    _build(store, logs, "20261124t020000-0000bb", "elsewhere", BuildStatus.SUCCEEDED, 1.0,
           cloud="another-cloud")
    _image(conn, BOOT_IMAGE, min_disk=1)
    _server(conn, ELSEWHERE, FAMILY, datetime.now(UTC) - timedelta(seconds=90))
    _server(conn, NEW_FAMILY, "ws2025", datetime.now(UTC))
    # A builder whose heartbeat went stale builds nothing (gc's business, as a leftover).
    _server(conn, "20261126t040000-57a1e0", FAMILY, datetime.now(UTC) - timedelta(hours=1))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(sim.write_clouds_yaml(tmp_path / "c.yaml")))
    return {"sim": sim, "conn": conn, "store": store, "ids": ids}


def _mutating(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    return {k: n for k, n in changed.items()
            if k.split()[1] not in READ_ONLY and k != "identity POST"}


def test_status_shows_each_family_and_changes_nothing(
        fleet: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim, ids = fleet["sim"], fleet["ids"]
    argv = ["status", "--os-cloud", sim.cloud_name, "--state-dir", str(fleet["store"].root)]
    before = dict(sim.stats()["requests"])
    resources_before = {k: v for k, v in sim.resources().items() if k != "now"}
    assert main([*argv, "--json", "--html", str(tmp_path / "both.html")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1  # one JSON object per line, as every --json prints
    data = json.loads(printed)
    assert main([*argv, "--html", str(tmp_path / "status.html")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'status.html'}\n"
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert (tmp_path / "both.html").is_file()
    assert _mutating(before, dict(sim.stats()["requests"])) == {}
    assert {k: v for k, v in sim.resources().items() if k != "now"} == resources_before

    rows = {row["family"]: row for row in data["families"]}
    # Another cloud's family is not this cloud's; a family built only on another host is.
    assert sorted(rows) == ["ws2019", "ws2022", "ws2025"]
    [building] = rows["ws2022"]["building_elsewhere"]
    assert building["build_id"] == ELSEWHERE
    assert building["builder"] == f"osbuild-{ELSEWHERE}-builder"
    assert [b["build_id"] for b in rows["ws2025"]["building_elsewhere"]] == [NEW_FAMILY]
    assert rows["ws2025"]["last_build"] is None and rows["ws2019"]["building_elsewhere"] == []
    row = rows["ws2022"]
    assert row["cloud"] == sim.cloud_name
    assert row["current"]["id"] == ids["current"]
    assert (row["current"]["kind"], row["current"]["parent_image_id"],
            row["current"]["generation"]) == ("refresh", "p-1", 2)
    assert row["next"]["id"] == ids["next"]
    assert (row["next"]["hidden"], row["next"]["verify"]) == (True, "pending")
    # The dead build is the newest: still "running" in its state; the trend has the others.
    assert row["last_build"]["build_id"] == DEAD
    assert row["last_build"]["reason"] == (
        f"its osbuild (pid {2 ** 22 + 1}) is gone: osbuild resume {DEAD}, or osbuild gc "
        "--older-than 0 to start over")
    assert (row["last_build"]["step"], row["last_build"]["died"]) == ("install", True)
    assert row["durations_seconds"] == [3600.0, 5400.0, 4000.0]
    assert row["durations_kind"] == "full"
    assert rows["ws2019"]["current"] is None and rows["ws2019"]["next"] is None
    assert rows["ws2019"]["last_build"]["reason"] == HOSTILE
    assert rows["ws2019"]["last_build"]["duration_seconds"] == 120.0

    tree = parse((tmp_path / "status.html").read_text())
    assert active_content(tree) == []
    cells = {r[0]: r for r in table_rows(tree, "families")}
    assert "ws2022-cur" in cells["ws2022"][2] and "verify passed" in cells["ws2022"][2]
    assert "made by refresh 2" in cells["ws2022"][2]
    assert "ws2022-new" in cells["ws2022"][4] and "hidden, verify pending" in cells["ws2022"][4]
    assert "msiexec <script>alert(1)</script> \\x1b[2J" in cells["ws2019"][3]
    # A dead build says where it died, not "running" with no duration.
    assert cells["ws2022"][3].startswith("died in step install")
    assert "1h30m" in cells["ws2022"][6]  # the longest of the trend
    assert tree.xpath('//tr[td/b="ws2022"]//polyline[@class="spark"]')

    assert "ws2022-cur" in table and "ws2022-new" in table and "\x1b" not in table
    assert "made by refresh 2" in table
    assert ids["current"] in table and ids["next"] in table  # the names need not be unique
    assert sparkline([3600.0, 5400.0, 4000.0]) in table
    assert "full builds" in table and "1h30m full builds" in " ".join(cells["ws2022"][6].split())
    assert "died in step install" in table and "running in -" not in table
    assert f"building on another host: build {ELSEWHERE} (heartbeat 1m" in table
    assert f"building on another host: build {NEW_FAMILY}" in table
    assert f"building on another host: {ELSEWHERE}" in " ".join(cells["ws2022"][3].split())


def test_a_live_build_shows_its_step_and_a_dead_one_where_it_died(tmp_path: Path) -> None:
    def state(pid: int, step: str | None, host: str = socket.gethostname()) -> BuildState:
        return BuildState(build_id=DEAD, family=FAMILY, cloud="c", spec_path="/s.yaml",
                          spec_digest="d", pid=pid, step=step, host=host)

    # Another host's build: its pid means nothing here, so it is taken as running.
    assert last_build(state(2 ** 22 + 1, "verify", "elsewhere")).progress == \
        "running in step verify"
    assert last_build(state(2 ** 22 + 1, "install")).progress == "died in step install"
    assert last_build(state(2 ** 22 + 1, None)).progress == "died before its first step"
    finished = state(2 ** 22 + 1, "publish")
    finished.status = BuildStatus.SUCCEEDED
    assert last_build(finished).progress is None and last_build(finished).step is None


def test_a_refresh_says_so_in_the_last_build_column(tmp_path: Path) -> None:
    # Only a successful refresh's image said "made by refresh"; a failed or dead refresh
    # read like a full build (found from outside, session 30).
    store, logs = StateStore(tmp_path / "state"), tmp_path / "logs"
    _build(store, logs, "20261201t010000-000004", FAMILY, BuildStatus.FAILED, 35.0,
           kind="refresh", cloud="c", error="updates: the guest reported a failure",
           records={"parent": {"image_id": "p-1", "name": "ws2022-cur"}})
    [row] = family_rows("c", {}, store.list(), [])
    assert row.last_build is not None
    assert (row.last_build.kind, row.last_build.shown) == ("refresh", "refresh failed in 35s")
    assert row.to_dict(datetime.now(UTC))["last_build"]["kind"] == "refresh"
    out = io.StringIO()
    status_table([row], now=datetime.now(UTC), print_to=out)
    assert "refresh failed in 35s" in out.getvalue()
    page = parse(render_status_html([row], clouds=["c"], state_dir=tmp_path, now=datetime.now(UTC)))
    assert " ".join(table_rows(page, "families")[0][3].split()).startswith("refresh failed 35s")
    full = last_build(BuildState(build_id=DEAD, family=FAMILY, cloud="c", spec_path="/s.yaml",
                                 spec_digest="d", status=BuildStatus.FAILED))
    assert full.kind == "full" and not full.shown.startswith("refresh")


def test_a_build_with_no_report_counts_in_its_clouds_seconds() -> None:
    # gc retired it, so no report measured it: its state's span, at its cloud's pace, is
    # what a report would have said (a resume that fails writes one in cloud seconds).
    started = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    retired = BuildState(build_id=DEAD, family=FAMILY, cloud="c", spec_path="/s.yaml",
                         spec_digest="d", status=BuildStatus.FAILED, started_at=started,
                         updated_at=started + timedelta(seconds=90))
    assert last_build(retired).duration == 90.0
    assert last_build(retired, Clock(600.0)).duration == 54000.0
    assert last_build(retired, Clock(600.0)).finished_at == started + timedelta(seconds=90)


def test_the_trend_has_the_builds_of_the_newest_successful_ones_kind(tmp_path: Path) -> None:
    # A monthly refresh with a full build every few months: one line of both jumped with
    # every full build, and "are builds getting slower?" had no answer (session 29).
    store, logs = StateStore(tmp_path / "state"), tmp_path / "logs"
    for build_id, kind, seconds in (("20260901t010000-000001", "full", 6000.0),
                                    ("20261001t010000-000002", "refresh", 2400.0),
                                    ("20261101t010000-000003", "full", 6600.0),
                                    ("20261201t010000-000004", "refresh", 2600.0)):
        _build(store, logs, build_id, FAMILY, BuildStatus.SUCCEEDED, seconds, kind=kind,
               cloud="c")
    [row] = family_rows("c", {}, store.list(), [])
    assert (row.durations_kind, row.durations) == ("refresh", [2400.0, 2600.0])
    assert row.to_dict(datetime.now(UTC))["durations_kind"] == "refresh"
    out = io.StringIO()
    status_table([row], now=datetime.now(UTC), print_to=out)
    shown = out.getvalue()
    assert "40m-43m20s" in shown and "refreshes" in shown and "full builds" not in shown, shown


def test_a_trend_of_one_build_reads_as_one(tmp_path: Path) -> None:
    # "last 1 successful refreshes: 1h9m47s" and the range "1h9m47s-1h9m47s" (s31).
    store, logs = StateStore(tmp_path / "state"), tmp_path / "logs"
    _build(store, logs, "20261201t010000-000004", FAMILY, BuildStatus.SUCCEEDED, 2400.0,
           kind="refresh", cloud="c")
    [row] = family_rows("c", {}, store.list(), [])
    out = io.StringIO()
    status_table([row], now=datetime.now(UTC), print_to=out)
    cells = [cell.strip() for line in out.getvalue().splitlines() for cell in line.split("│")]
    assert "40m" in cells and "refresh" in cells, out.getvalue()
    assert "40m-40m" not in out.getvalue() and "refreshes" not in out.getvalue()
    page = render_status_html([row], clouds=["c"], state_dir=tmp_path, now=datetime.now(UTC))
    assert "last 1 successful refresh:" in page and "40m&ndash;40m" not in page


def test_leftovers_are_what_gc_would_remove(fleet: dict[str, Any]) -> None:
    later = datetime.now(UTC) + timedelta(days=2)
    rows = {r.family: r for r in cloud_status(fleet["conn"], fleet["sim"].cloud_name,
                                               fleet["store"], later)}
    assert [(r.kind, r.id) for r in rows[FAMILY].leftovers] == [
        ("volume", fleet["ids"]["leftover"])]
    assert rows["ws2019"].leftovers == []
    # Nothing was removed: it is a dry run, and the dead build's state is unchanged.
    assert fleet["conn"].block_storage.get_volume(fleet["ids"]["leftover"]).id
    assert fleet["store"].load(DEAD).status is BuildStatus.RUNNING


def test_sparkline_runs_from_shortest_to_longest() -> None:
    assert sparkline([1.0, 8.0, 4.5]) == "▁█▅"
    assert sparkline([5.0, 5.0]) == "▄▄"  # all alike: the middle
    assert sparkline([]) == ""


def test_a_page_that_cannot_be_written_is_one_error_line(
        fleet: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Once a NotADirectoryError traceback; `osbuild report --html` already said it this way.
    afile = tmp_path / "afile"
    afile.write_text("")
    argv = ["status", "--os-cloud", fleet["sim"].cloud_name, "--state-dir",
            str(fleet["store"].root), "--html", str(afile / "status.html")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"osbuild: error: {afile / 'status.html'}: cannot write the page: Not a directory\n")


def test_an_unreadable_state_file_is_named_in_the_output_not_logged(
        fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    # `status --json 2>&1` and `gc --json 2>&1` (cron mail, log shipping) printed a logging
    # WARNING line before their one JSON document.
    sim, store = fleet["sim"], fleet["store"]
    broken = store.builds_dir / "20261126t050000-badbad.json"
    broken.write_text('{"build_id": "20261126t050000-badbad", "status": 7}')
    common = ["--os-cloud", sim.cloud_name, "--state-dir", str(store.root)]
    for command in (["status"], ["gc", "--dry-run"]):
        assert main([*command, *common, "--json"]) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.count("\n") == 1
        data = json.loads(out)
        found = (data["unreadable_state_files"] if command == ["status"]
                 else data[sim.cloud_name]["unreadable_state_files"])
        assert list(found) == [str(broken)]
        assert found[str(broken)] == "family: Field required"  # what, never the values
        assert main([*command, *common]) == 0
        out, err = capsys.readouterr()
        assert err.splitlines() == [f"osbuild: warning: skipped unreadable state file "
                                    f"{broken}: {found[str(broken)]}"]


def test_an_unreachable_cloud_is_named_and_the_others_are_shown(
        fleet: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import socket as sockets

    import yaml

    sim = fleet["sim"]
    config = Path(os.environ["OS_CLIENT_CONFIG_FILE"])
    data = yaml.safe_load(config.read_text())
    with sockets.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    north = dict(data["clouds"][sim.cloud_name])
    north["auth"] = {**north["auth"], "auth_url": f"http://127.0.0.1:{port}/identity/v3"}
    data["clouds"]["north"] = north
    config.write_text(yaml.safe_dump(data))
    state = ["--state-dir", str(fleet["store"].root)]
    clouds = ["--os-cloud", sim.cloud_name, "--os-cloud", "north"]

    page = tmp_path / "status.html"
    assert main(["status", *clouds, *state, "--json", "--html", str(page)]) == 2
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert err == ""  # --json: the document says it
    assert document["clouds"] == [sim.cloud_name]
    assert {row["family"] for row in document["families"]} >= {"ws2022"}
    [why] = document["unreachable_clouds"]
    assert why.startswith("north: ")
    assert f"not shown, unreachable: {why}" in text_of(parse(page.read_text()), "unreachable")

    assert main(["status", *clouds, *state]) == 2
    out, err = capsys.readouterr()
    assert "ws2022-cur" in out and err == f"osbuild: error: {why}\n"
    # The table names the cloud left out too, as the page does: stdout alone tells.
    assert out.rstrip().endswith(f"not shown, unreachable: {why}"), out

    # gc does the clouds it reaches (a dry run here) and names the other.
    assert main(["gc", *clouds, *state, "--dry-run", "--json"]) == 2
    out, err = capsys.readouterr()
    swept = json.loads(out)
    assert swept["unreachable_clouds"] == [why] and sim.cloud_name in swept and err == ""
    # With no cloud reached, as before: the error alone.
    assert main(["status", "--os-cloud", "north", *state]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"osbuild: error: {why}\n"


def test_a_failed_build_whose_image_was_made_current_since_says_so(tmp_path: Path) -> None:
    # Its promotion failed, the operator ran `osbuild images promote`: the last build column
    # still told them to, beside the current image it named (an outside tryout, s31).
    from osbuild.images.family import FamilyImage

    store, logs = StateStore(tmp_path / "state"), tmp_path / "logs"
    build_id = "20261201t010000-000005"
    told = "promote: refused; run osbuild images promote img-5 SPEC"
    _build(store, logs, build_id, FAMILY, BuildStatus.FAILED, 35.0, cloud="c", error=told)
    image = FamilyImage(id="img-5", name="ws2022-5", family=FAMILY, version=build_id,
                        build_id=build_id, status="active", verify="passed", current=True,
                        hidden=False, protected=False, visibility="private",
                        created_at=datetime.now(UTC), in_use=0, kind="full")
    [row] = family_rows("c", {FAMILY: [image]}, store.list(), [])
    assert row.last_build is not None and row.current is not None
    assert row.last_build.reason == ("its image img-5 has been made current since; it had "
                                     f"failed with: {told}")
    # Another build's image being current changes nothing.
    other = FamilyImage(**{**image.__dict__, "build_id": "20261130t010000-000001"})
    [row] = family_rows("c", {FAMILY: [other]}, store.list(), [])
    assert row.last_build is not None and row.last_build.reason == told


def test_a_dead_builds_resources_kept_for_resume_are_shown(tmp_path: Path) -> None:
    # `leftovers: none` while a SIGKILLed build's 8 resources sat in the cloud, kept by gc
    # for `osbuild resume` (an outside tryout, s31): true to gc's definition, read as empty.
    from osbuild.unattended import gc

    store, logs = StateStore(tmp_path / "state"), tmp_path / "logs"
    build_id = "20261201t010000-000006"
    _build(store, logs, build_id, FAMILY, BuildStatus.RUNNING, 35.0, cloud="c")
    kept = [gc.Resource("server", "s-1", f"osbuild-{build_id}-builder", build_id, 600.0),
            gc.Resource("volume", "v-1", f"osbuild-{build_id}-target", build_id, 600.0)]
    [row] = family_rows("c", {}, store.list(), [], kept_for_resume=kept)
    assert [r["id"] for r in row.to_dict(datetime.now(UTC))["kept_for_resume"]] == ["s-1", "v-1"]
    out = io.StringIO()
    status_table([row], now=datetime.now(UTC), print_to=out)
    cells = [cell.strip() for line in out.getvalue().splitlines() for cell in line.split("│")]
    assert "2 kept for resume" in cells and build_id in cells, out.getvalue()
    page = render_status_html([row], clouds=["c"], state_dir=tmp_path, now=datetime.now(UTC))
    assert f"2 kept for resume of build {build_id}" in page
