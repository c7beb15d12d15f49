"""Follow the unattended install through the console log until the guest powers off.

Success is SHUTOFF after the guest's `sysprep:start` marker (the power-off protocol in
osbuild/markers.py makes sure it is read before the console can vanish). Failure is a `fail`
marker, the server going to ERROR, SHUTOFF before sysprep, a stage that makes no progress
within its timeout, or the whole build running past `builder.timeout`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from osbuild import markers
from osbuild.cloud import compute
from osbuild.cloud.clock import Deadline
from osbuild.cloud.console import ConsoleRead, ConsoleReader
from osbuild.cloud.transcript import Transcript
from osbuild.errors import BuildFailed, GuestFailure, ServerFault, StageTimeout
from osbuild.media import stages
from osbuild.pipeline.context import BuildContext, StageRecord
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.pipeline.steps.boot_builder import server_fault
from osbuild.spec import format_duration
from osbuild.unattended.lock import Heartbeat, send_heartbeat

log = logging.getLogger(__name__)

# How a sysprep:ok the console did not show was known (the `stage sysprep ok` event's detail).
ACK_READ = ("read from the server's os-server-password, where the guest posted it before "
            "powering off (its console was gone)")
POWERED_OFF = ("the builder powered off after sysprep:start, as the guest does once sysprep "
               "has generalized Windows (its sysprep:ok went with the console)")
FIRST_POLL_LINES = 200
LAST_LINES_ON_STALL = 15
# Info markers kept per stage in the report (a runaway loop must not grow it without end).
MAX_STAGE_INFO = 50
# stage-updates.ps1's info marker after each pass: "pass 2/5: 7 updates, result code 2".
_UPDATE_PASS = re.compile(r"pass (?P<pass>\d+)/\d+:")


class StallTimeout(StageTimeout):
    """A stage timed out; carries the console's last lines and where to look."""

    def __init__(self, reason: str, *, stage: str, last_lines: list[str],
                 console: str | None) -> None:
        super().__init__(reason, stage=stage)
        self.last_lines = last_lines
        self.console = console

    def lines(self) -> list[str]:
        out = [str(self)]
        if self.last_lines:
            out.append("last console lines:")
            out.extend(f"  | {line}" for line in self.last_lines)
        if self.console:
            out.append(f"console: {self.console}")
        return out


class WatchInstall(Resumable):
    name = "install"

    def run(self, ctx: BuildContext) -> None:
        watcher = _Watcher(ctx)
        ctx.watching_guest = True
        try:
            watcher.watch()
        finally:
            watcher.transcript.close()
        # Only when the watch ended on its own: an interrupt leaves it set for the runner,
        # which names the guest's stage.
        ctx.watching_guest = False

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        # The transcript and the last stage are saved as the markers come (see _handle).
        return {"sysprep_reached": ctx.sysprep_reached}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        nonce = ctx.resumed_media.nonce if ctx.resumed_media else ""
        ctx.sysprep_reached = (bool(saved.record.get("sysprep_reached"))
                               or _transcript_shows_sysprep(saved.record, nonce))
        ctx.resumed_stage = saved.record.get("last_stage")
        return None if saved.done else self


def _transcript_shows_sysprep(record: Any, nonce: str) -> bool:
    """The transcript on disk holds every marker the dead watcher saw (and some it did not)."""
    path = record.get("transcript_path")
    if not path or not nonce:
        return False
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(m.stage == "sysprep" and m.status is markers.Status.START
               for m in markers.parse_lines(lines, nonce))


class _Watcher:
    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.conn = ctx.conn
        self.server_id = ctx.require(ctx.server_id, "server_id")
        media = ctx.media_facts()
        self.nonce = media.nonce
        # Stages in the order this build runs them (the plan drops disabled ones).
        self.order = stages.watch_order(media.guest_stages)
        self.timeouts = ctx.spec.builder.stage_timeouts
        transcript_path = ctx.workdir / "console.log"
        self.transcript = Transcript.to_file(transcript_path, redact=ctx.redactor.guest_text)
        ctx.save_record(WatchInstall.name, transcript_path=str(transcript_path))
        self.reader = ConsoleReader(self.conn, self.server_id, self.transcript,
                                    first_lines=FIRST_POLL_LINES, cancel=ctx.cancel.event,
                                    on_scroll=self._scrolled)
        self.stage = "boot"
        self.last_info: str | None = None  # the stage's latest info marker
        self.stage_deadline = self._deadline_of("boot")
        if ctx.resumed_stage:
            # A resumed build goes on from the last marker the dead run recorded.
            self._start_stage(ctx.resumed_stage)
        self.overall = Deadline(ctx.clock, ctx.started_at + ctx.spec.builder.timeout,
                                "build", ctx.spec.builder.timeout)
        # Fresh metadata tells other hosts (and gc) that this build is alive. The stamps are
        # wall-clock times that other hosts judge against their wall clock (STALE_AFTER), so
        # the interval is real seconds whatever the cloud's pace: a simulated cloud at speed
        # 6000 would otherwise get a metadata update with every console poll.
        server_id = self.server_id
        self.heartbeat = Heartbeat(lambda: send_heartbeat(self.conn, server_id),
                                   interval=ctx.options.heartbeat_every,
                                   on_failure=self._heartbeat_failed)

    # ------------------------------------------------------------------ main loop

    def watch(self) -> None:
        ctx = self.ctx
        interval = ctx.options.poll_min
        while True:
            ctx.cancel.check()
            server = compute.get_server(self.conn, self.server_id, cancel=ctx.cancel.event)
            status = server.status.upper()
            if status == "ERROR":
                raise ServerFault(f"Nova put the builder in ERROR: {server_fault(server)}",
                                  stage=self.stage)
            new_lines: tuple[str, ...] = ()
            if status == "ACTIVE":
                new_lines = self._read_console().new_lines
                self._handle(markers.parse_lines(new_lines, self.nonce))
            elif status == "SHUTOFF":
                # One last look: some clouds keep the log after power-off (libvirt's default
                # pty console does not: 404).
                last = self._read_console()
                self._handle(markers.parse_lines(last.new_lines, self.nonce))
                if not ctx.sysprep_reached and self._sysprep_acknowledged():
                    ctx.sysprep_reached = True
                elif ctx.sysprep_reached and self._sysprep_running():
                    self._sysprep_ok_unread()
                self._finish_stage("ok" if ctx.sysprep_reached else "failed")
                if ctx.sysprep_reached:
                    self._warn_unseen()
                    return
                reason = f"the builder powered off before sysprep (last stage: {self.stage})"
                if not last.available:
                    reason += ("; no sysprep:start marker was read while it ran, and its "
                               "console was gone after power-off")
                raise BuildFailed(reason, stage=self.stage)
            self._check_deadlines()
            self.heartbeat.maybe_beat()
            interval = self._next_interval(interval, bool(new_lines))
            ctx.pause(interval)

    def _warn_unseen(self) -> None:
        """Stages between the first this run saw and sysprep whose markers it never read:
        the console log had moved past them when it was read again (a cloud that did not
        answer for a while). The build stands, as the guest starts sysprep only after them;
        the warning says why the report lacks their times."""
        seen = [record.stage for record in self.ctx.stages]
        if not seen or seen[0] not in self.order:
            return
        between = self.order[self.order.index(seen[0]):]
        unseen = [stage for stage in between if stage not in seen and stage != "sysprep"]
        if unseen:
            self.ctx.emit(EventName.WARNING, message=(
                f"the console never showed guest stage(s) {', '.join(unseen)}: their markers "
                "had left the console log when it was read again; the guest ran them (it "
                "starts sysprep only after them), so the image stands, without their times"))

    def _sysprep_acknowledged(self) -> bool:
        """Whether the powered-off guest had posted its sysprep:ok to the metadata service
        (rule 5 of the power-off protocol in osbuild/markers.py): the one word from the guest
        that outlives a console gone with the power-off, for a watcher that missed
        sysprep:start (a resume after the orchestrator died)."""
        ctx = self.ctx
        if not self._ack_posted():
            return False
        if self.stage != "sysprep":
            self._finish_stage("ok")
            self._start_stage("sysprep")
        ctx.save_record(WatchInstall.name, last_stage="sysprep", sysprep_reached=True)
        self._emit_sysprep_ok(ACK_READ)
        return True

    def _ack_posted(self, *, refused_ok: bool = False) -> bool:
        posted = compute.server_password(self.conn, self.server_id,
                                         cancel=self.ctx.cancel.event, refused_ok=refused_ok)
        return posted is not None and posted.strip() == markers.sysprep_ack(self.nonce)

    def _sysprep_running(self) -> bool:
        """Whether sysprep:start was read and its sysprep:ok was not."""
        stages = self.ctx.stages
        return bool(stages) and stages[-1].stage == "sysprep" and stages[-1].status == "running"

    def _sysprep_ok_unread(self) -> None:
        """The builder powered off after sysprep:start, and sysprep:ok went with the console
        (rule 1 of the power-off protocol: the usual case on Nova's pty console, where the
        guest powers off seconds after writing it). The stage still ends in an event, so a
        log alert keyed on `sysprep ok` sees every finished build; its detail says how the
        end was known."""
        # Only a detail here: the build has succeeded whatever Nova answers.
        self._emit_sysprep_ok(ACK_READ if self._ack_posted(refused_ok=True) else POWERED_OFF)

    def _emit_sysprep_ok(self, detail: str) -> None:
        # The event only: a stage record's detail is what a failed stage said.
        ctx = self.ctx
        ctx.emit(EventName.STAGE, stage="sysprep", status=markers.Status.OK.value,
                 detail=detail, elapsed=round(ctx.elapsed(), 1))

    def _next_interval(self, interval: float, progressed: bool) -> float:
        opts = self.ctx.options
        if progressed or self.stage in ("boot", "sysprep") or \
                self._next_stage(self.stage) == "sysprep":
            # Something is happening (or sysprep and SHUTOFF are due: sysprep's start is only
            # on the console until the guest powers off): look again soon.
            return min(opts.poll_min, markers.MAX_POLL_INTERVAL)
        # Never longer than the power-off protocol allows (osbuild/markers.py): sysprep:start
        # must be read before the guest may power off and take the console with it.
        return min(interval * 1.5, opts.poll_max, markers.MAX_POLL_INTERVAL)

    # ------------------------------------------------------------------ console

    def _read_console(self) -> ConsoleRead:
        read = self.reader.read()
        self.ctx.console_polls += read.polls
        self.ctx.console_bytes += read.bytes
        if read.lost:
            self.ctx.emit(EventName.WARNING, message=read.lost_message("console.log",
                                                                       "markers"))
        return read

    def _heartbeat_failed(self, message: str) -> None:
        self.ctx.emit(EventName.WARNING, message=message)

    def _scrolled(self, got: int, asking: int) -> None:
        # Routine: a reboot's firmware lines repeat what the transcript ends with, or more
        # came than the last window held. The larger window loses nothing.
        log.debug("%s: console: %d lines did not continue the transcript; asking for %d",
                  self.ctx.build_id, got, asking)

    # ------------------------------------------------------------------ markers

    def _handle(self, found: list[markers.Marker]) -> None:
        for marker in found:
            if marker.status is markers.Status.FAIL:
                self._finish_stage("failed", marker.detail)
                self._emit_marker(marker)
                raise GuestFailure(
                    f"the guest reported a failure: {marker.detail or 'no detail'}",
                    stage=marker.stage,
                )
            if marker.status is markers.Status.START:
                self._finish_stage("ok")
                self._start_stage(marker.stage)
                if marker.stage == "sysprep":
                    self.ctx.sysprep_reached = True
            elif marker.status is markers.Status.INFO:
                self._note(marker)
                self._check_update_cap(marker)
            elif marker.status is markers.Status.OK:
                self._finish_stage("ok")
                following = self._next_stage(marker.stage)
                self.stage_deadline = self._deadline_of(following)
            # On disk before anyone hears of it: a resumed build reads these when the
            # builder powered off while nobody watched.
            self.ctx.save_record(WatchInstall.name, last_stage=marker.stage,
                                 sysprep_reached=self.ctx.sysprep_reached,
                                 transcript_position=self.ctx.console_bytes)
            self._emit_marker(marker)

    def _emit_marker(self, marker: markers.Marker) -> None:
        self.ctx.emit(EventName.STAGE, stage=marker.stage, status=marker.status.value,
                      detail=marker.detail, elapsed=round(self.ctx.elapsed(), 1))

    def _start_stage(self, stage: str) -> None:
        self.stage = stage
        self.last_info = None
        self.ctx.stages.append(StageRecord(stage, started=self.ctx.elapsed()))
        self.stage_deadline = self._deadline_of(stage)

    def _note(self, marker: markers.Marker) -> None:
        if marker.stage == self.stage and marker.detail:
            self.last_info = marker.detail
        record = self.ctx.stages[-1] if self.ctx.stages else None
        if record is not None and record.stage == marker.stage and marker.detail and \
                len(record.info) < MAX_STAGE_INFO:
            record.info.append(marker.detail)

    def _check_update_cap(self, marker: markers.Marker) -> None:
        """A guest past updates.max_passes is in a loop the cap should have ended (a
        Windows Update that fails and is offered again, a script that lost count): it is
        stopped now, not when the stage's deadline passes hours later."""
        found = _UPDATE_PASS.match(marker.detail or "") if marker.stage == "updates" else None
        cap = self.ctx.spec.updates.max_passes
        if found is None or int(found["pass"]) <= cap:
            return
        self._finish_stage("failed", marker.detail)
        self._emit_marker(marker)
        raise BuildFailed(f"the guest went past updates.max_passes ({cap}): {marker.detail}",
                          stage="updates")

    def _finish_stage(self, status: str, detail: str = "") -> None:
        if self.ctx.stages and self.ctx.stages[-1].status == "running":
            record = self.ctx.stages[-1]
            record.status = status
            record.detail = detail
            record.finished = self.ctx.elapsed()

    def _next_stage(self, stage: str) -> str:
        if stage in self.order:
            index = self.order.index(stage)
            if index + 1 < len(self.order):
                return self.order[index + 1]
        return stage

    def _deadline_of(self, stage: str) -> Deadline:
        return Deadline.after(self.ctx.clock, self.timeouts.of(stage), stage,
                              setting=f"builder.stage_timeouts.{stage}")

    # ------------------------------------------------------------------ deadlines

    def _console_hint(self) -> str | None:
        """How to see the stalled builder's screen. Only a kept builder has one to see; and
        not its noVNC URL, whose token opens that console to anyone holding the log (a
        secret: the report's pages redacted it, the terminal and report.json did not)."""
        if not self.ctx.options.keep_on_failure:
            return None
        return (f"openstack console url show {self.server_id} (the builder is kept: "
                "--keep-on-failure)")

    def _stage_overdue(self) -> str:
        """Why the stage deadline ends the build: a stage that said nothing is stuck; one
        that kept reporting (update passes, reboots) is slow or looping, and its last word
        tells which."""
        limit = f"{format_duration(self.stage_deadline.seconds)} ({self.stage_deadline.setting})"
        if self.last_info is None:
            return f"no progress in stage {self.stage} for {limit}"
        return (f"stage {self.stage} did not finish within {limit}; "
                f"its last marker: {self.last_info}")

    def _check_deadlines(self) -> None:
        for deadline, reason in (
            (self.overall, f"the build ran past builder.timeout "
                           f"({format_duration(self.overall.seconds)})"),
            (self.stage_deadline, self._stage_overdue()),
        ):
            if deadline.expired:
                if self.stage == "winpe" and deadline is self.stage_deadline:
                    reason += ("; Setup also stops here when windows.edition is not on the "
                               "ISO (`osbuild media inspect ISO` lists its editions)")
                raise StallTimeout(reason, stage=self.stage,
                                   last_lines=self.transcript.tail(LAST_LINES_ON_STALL),
                                   console=self._console_hint())
