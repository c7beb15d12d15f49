"""The one exception hierarchy; only the CLI turns these into messages and exit codes."""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_INVALID_INPUT = 2
# Beyond the documented 0/1/2/130: the image was built but osbuild could not delete
# everything it created; the message lists the ids to delete by hand.
EXIT_CLEANUP_INCOMPLETE = 3
EXIT_INTERRUPTED = 130

# What a run of several builds exits with: the first of these that any build ended with.
# 3 first: resources are left in the cloud and only a person removes them (130 and 2 both
# promise that nothing is left). 130 next: the run was stopped, everything it created is
# deleted, and it has to run again (systemd counts it a success). 1 before 2: exit 2 says
# that nothing was created, untrue once a build ran and failed. 0 only when every build
# succeeded or was skipped. README's "Exit codes" says the same.
EXIT_PRECEDENCE = (EXIT_CLEANUP_INCOMPLETE, EXIT_INTERRUPTED, EXIT_BUILD_FAILED,
                   EXIT_INVALID_INPUT)


def run_exit_code(codes: Iterable[int]) -> int:
    """The exit code of a run whose builds ended with ``codes`` (see EXIT_PRECEDENCE)."""
    seen = set(codes)
    return next((code for code in EXIT_PRECEDENCE if code in seen), EXIT_OK)


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an unexpected exception, naming the type once.

    openstacksdk's ``HttpException`` already starts its text with its class name; prefixing
    it again printed ``HttpException: HttpException: 413 ...``.
    """
    name = type(exc).__name__
    text = (str(exc).strip().splitlines() or [""])[0]
    if not text:
        return name
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


class OsbuildError(Exception):
    """Base of every error osbuild explains to its user."""

    exit_code = EXIT_BUILD_FAILED

    def lines(self) -> list[str]:
        """The message as the CLI prints it: one line per problem."""
        return [str(self)]


class InvalidInput(OsbuildError):
    """Bad input found before any cloud resource was created (exit 2)."""

    exit_code = EXIT_INVALID_INPUT

    def __init__(self, problems: Iterable[str], *, source: str | None = None) -> None:
        self.problems = list(problems) or ["invalid input"]
        self.source = source
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{p}" for p in self.problems]


class SpecError(InvalidInput):
    """A build spec that does not validate."""


class PreflightError(InvalidInput):
    """The cloud cannot run this build as specified (missing image, quota, flavor...)."""


class RunRefused(PreflightError):
    """A run of several builds refused whole by its preflight: every problem, and whose.

    ``of_job`` holds each build's own problems, in the run's order (empty: the build was
    fine, and refused with the run); the metrics and webhooks record every build.
    """

    def __init__(self, problems: Iterable[str], *, of_job: list[list[str]]) -> None:
        super().__init__(problems)
        self.of_job = of_job


class AuthError(InvalidInput):
    """Credentials or cloud configuration are wrong."""


class CloudError(OsbuildError):
    """An OpenStack API call failed in a way osbuild could not recover from."""


class BuildFailed(OsbuildError):
    """The build ran and failed; `stage` names where."""

    def __init__(self, reason: str, *, stage: str | None = None) -> None:
        self.reason = reason
        self.stage = stage
        super().__init__(f"{stage}: {reason}" if stage else reason)


class GuestFailure(BuildFailed):
    """The guest reported a failure marker."""


class StageTimeout(BuildFailed):
    """A stage or wait ran past its deadline."""


class ServerFault(BuildFailed):
    """Nova put a server in ERROR; the message carries Nova's fault."""


class ResourceFailed(BuildFailed):
    """A volume or image went to its failure status (error, killed)."""


class VerifyFailed(BuildFailed):
    """The new image failed its boot test."""


class CleanupIncomplete(OsbuildError):
    """Some resources could not be deleted; `leftovers` lists them for manual removal."""

    exit_code = EXIT_CLEANUP_INCOMPLETE

    def __init__(self, leftovers: list[str], cause: OsbuildError | None = None) -> None:
        self.leftovers = leftovers
        self.cause = cause
        # What failed comes first: a one-line reader (build.failed, the webhook, status)
        # must learn that the capture timed out, not only that a volume was left.
        self.stage: str | None = getattr(cause, "stage", None)
        deleted = "could not delete: " + ", ".join(leftovers)
        super().__init__(f"{cause}; {deleted}" if cause is not None else deleted)

    def lines(self) -> list[str]:
        out = self.cause.lines() if self.cause else []
        out.append("cleanup incomplete; delete by hand:")
        out.extend(f"  {item}" for item in self.leftovers)
        return out


class Interrupted(OsbuildError):
    """Ctrl-C or SIGTERM; everything created was cleaned up before this is raised."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, signal_name: str = "SIGINT", *, where: str | None = None,
                 stage: str | None = None) -> None:
        self.signal_name = signal_name
        self.where = where  # "while waiting for the family lock", "before the verify step"
        self.stage = stage  # the step it cut short (or stopped before), as a failure names
        super().__init__(f"interrupted by {signal_name}" + (f" {where}" if where else ""))


class LockBusy(OsbuildError):
    """Another run is building this family in this cloud: a skip, not a failure (exit 0).

    ``build_id``: the other build, when the cloud guard found its builder.
    """

    exit_code = EXIT_OK

    def __init__(self, message: str, *, build_id: str | None = None) -> None:
        super().__init__(message)
        self.build_id = build_id
