"""The build orchestrator: a literal list of steps run with guaranteed cleanup."""

from osbuild.build.clock import CancelToken
from osbuild.build.context import BuildOptions
from osbuild.build.events import Event, EventBus
from osbuild.build.pipeline import BuildResult, build_steps, run_build

__all__ = [
    "BuildOptions",
    "BuildResult",
    "CancelToken",
    "Event",
    "EventBus",
    "build_steps",
    "run_build",
]
