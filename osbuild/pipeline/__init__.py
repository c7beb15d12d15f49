"""The build orchestrator: a literal list of steps run with guaranteed cleanup."""

from osbuild.cloud.clock import CancelToken
from osbuild.pipeline.context import BuildOptions
from osbuild.pipeline.events import Event, EventBus
from osbuild.pipeline.run import BuildResult, build_steps, run_build

__all__ = [
    "BuildOptions",
    "BuildResult",
    "CancelToken",
    "Event",
    "EventBus",
    "build_steps",
    "run_build",
]
