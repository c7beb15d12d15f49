"""A run of several builds preflighted as a whole, before its first build creates anything.

With ``--parallel 1`` the builds run one after another, and each build's own preflight step
runs when it starts: a bad last spec was found hours into the run. So a run of several
builds checks every (spec, cloud) first, as its preflight step would (and the builds that
run side by side together against the cloud's quotas), and is refused with every problem at
once (exit 2) before the first build starts. Each build's preflight step still runs when it
starts: what a cloud holds can change while the earlier builds run.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from osbuild.cloud.connect import connect
from osbuild.errors import InvalidInput, RunRefused
from osbuild.images.refresh import Choice, RefreshMode, choose
from osbuild.pipeline import BuildOptions, EventBus
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.run import new_context
from osbuild.pipeline.steps.preflight import Needs, Preflight, peak_of, quota_problems
from osbuild.spec import BuildSpec
from osbuild.unattended.fingerprint import unchanged_since_current
from osbuild.unattended.lock import LocalLock, active_builders
from osbuild.unattended.process import pid_alive
from osbuild.unattended.state import StateStore

if TYPE_CHECKING:
    from osbuild.unattended.jobs import Job


@dataclass
class RunCheck:
    """What the preflight of a run found: every problem, each naming its family (and the
    cloud, when the run uses several), and per build of the run, in its order, its own
    problems and the kind of build it would be (None: skipped, or unknown)."""

    problems: list[str] = field(default_factory=list)
    of_job: list[list[str]] = field(default_factory=list)
    choices: list[Choice | None] = field(default_factory=list)


def preflight_run(*, jobs: Sequence[Job], identities: Mapping[str | None, str],
                  options: BuildOptions, parallel: int, region_name: str | None,
                  settings: Mapping[str, Any], refresh: RefreshMode,
                  if_changed: bool = False, wait_lock: float | None = None) -> None:
    """Raise :class:`RunRefused` with every problem of every build of the run.

    A build the run will skip creates nothing, so neither its problems nor what it would
    hold count (:func:`_will_skip`): cron's weekly ``--if-changed`` run of unchanged
    families was refused (exit 2) whenever the cloud's quota could not take them all at once.

    One build alone is left to its own preflight step, the first thing it does (its report,
    state and webhook then say what was wrong). Each problem of several builds names the
    family (and the cloud, when the run uses several): ``ws2022 in east: builder.flavor: ...``.
    """
    if len(jobs) < 2:
        return
    found = check_run(jobs=jobs, identities=identities, options=options, parallel=parallel,
                      region_name=region_name, settings=settings, refresh=refresh,
                      skipping=True, if_changed=if_changed, wait_lock=wait_lock)
    if found.problems:
        raise RunRefused(found.problems, of_job=found.of_job)


def check_run(*, jobs: Sequence[Job], identities: Mapping[str | None, str],
              options: BuildOptions, parallel: int, region_name: str | None,
              settings: Mapping[str, Any], refresh: RefreshMode, skipping: bool,
              if_changed: bool = False, wait_lock: float | None = None,
              name_clouds: bool = False) -> RunCheck:
    """Each build's preflight, and the quotas of the builds that run at once, creating
    nothing. ``skipping``: leave out the builds the run will skip (a build's); without it
    every build is checked (``osbuild validate --os-cloud``). ``name_clouds``: every
    problem names its cloud, also when the run uses one."""
    by_cloud: dict[str | None, list[BuildSpec]] = {}
    for job in jobs:
        by_cloud.setdefault(job.cloud, []).append(job.spec)
    found = RunCheck(of_job=[[] for _ in jobs], choices=[None for _ in jobs])
    for cloud, specs in by_cloud.items():
        where = f" in {identities[cloud]}" if name_clouds or len(by_cloud) > 1 else ""
        conn = connect(cloud, region_name=region_name, **settings)
        try:
            needs: list[Needs] = []
            counted: list[str] = []  # the families whose needs are known
            # Families another osbuild builds now (any host: a fresh heartbeat on its builder
            # or its family claim).
            busy = ({builder.family for builder in active_builders(conn)}
                    if skipping and wait_lock is None else set())
            for index, job in enumerate(jobs):
                if job.cloud != cloud:
                    continue
                if skipping and (job.spec.name in busy or _will_skip(
                        job.spec, conn, identities[cloud], options,
                        if_changed=if_changed, wait_lock=wait_lock)):
                    continue
                problems, need, choice = _one(job.spec, conn, cloud, identities[cloud], options,
                                              refresh)
                found.problems.extend(f"{job.spec.name}{where}: {problem}"
                                      for problem in problems)
                found.of_job[index] = problems
                found.choices[index] = choice
                if need is not None:
                    needs.append(need)
                    counted.append(job.spec.name)
            at_once = min(parallel, len(needs))
            if at_once >= 2:
                ctx = _context(specs[0], conn, cloud, identities[cloud], options)
                # Every line names its families: these are any `at_once` of them.
                who = (f"the {at_once} builds that run at once (--parallel {parallel}, of "
                       f"{', '.join(counted)})")
                prefix = f"{identities[cloud]}: " if where else ""
                found.problems.extend(prefix + problem for problem in
                                      quota_problems(ctx, peak_of(needs, at_once), who=who))
        finally:
            conn.close()
    return found


def _will_skip(spec: BuildSpec, conn: Any, cloud: str, options: BuildOptions, *,
               if_changed: bool, wait_lock: float | None) -> bool:
    """Whether the build will be skipped: its family is being built by a live osbuild of
    this host (and the run does not wait for it), or it is unchanged (``--if-changed``).
    A family whose builder has a fresh heartbeat (another host's build) is skipped too: the
    caller reads the cloud's builders once for every spec.

    The build decides again under its lock; here only the lock file is read, never taken
    (taking it, even for a moment, would make another run that starts now skip).
    """
    if wait_lock is None and options.state_dir is not None:
        holder = LocalLock(StateStore(options.state_dir).locks_dir, cloud, spec.name).holder()
        pid = (holder or {}).get("pid")
        if (holder and holder.get("host") == socket.gethostname() and isinstance(pid, int)
                and pid > 0 and pid_alive(pid)):
            return True
    return if_changed and unchanged_since_current(conn, spec)[0]


def _one(spec: BuildSpec, conn: Any, os_cloud: str | None, cloud: str, options: BuildOptions,
         refresh: RefreshMode) -> tuple[list[str], Needs | None, Choice | None]:
    """One build's preflight problems, what it holds at its peak (None: unknown) and the
    kind of build it would be (None: `--refresh always` refused)."""
    ctx = _context(spec, conn, os_cloud, cloud, options)
    try:
        # The build chooses again under its family's lock; here the choice only says which
        # preflight applies (a refresh neither finds nor reads the ISOs).
        choice = choose(conn, spec, refresh)
    except InvalidInput as exc:
        return list(exc.problems), None, None
    ctx.parent = choice.parent
    _resolved, need, problems = Preflight().examine(ctx)
    if need is not None:
        problems.extend(quota_problems(ctx, need))
    return problems, need, choice


def _context(spec: BuildSpec, conn: Any, os_cloud: str | None, cloud: str,
             options: BuildOptions) -> BuildContext:
    ctx = new_context(spec, conn, options=options, bus=EventBus(), cancel=None,
                      cloud_name=cloud, build_id="preflight")
    ctx.os_cloud = os_cloud
    return ctx
