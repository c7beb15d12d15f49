"""The simulated OpenStack cloud (Keystone, Nova, Cinder, Glance, Neutron) over real HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osbuild_sim.serve import SimCloud

__all__ = ["SimCloud"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `osbuild_sim.guest` & co. load without the HTTP stack.
    if name == "SimCloud":
        from osbuild_sim.serve import SimCloud

        return SimCloud
    raise AttributeError(name)
