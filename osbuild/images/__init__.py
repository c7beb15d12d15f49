"""Image families in Glance: list, prune per policy, promote and roll back."""

from osbuild.images.family import FamilyImage, list_family
from osbuild.images.manage import mark_current, promote, prune, rollback
from osbuild.images.policy import Decision, RotationPolicy, plan

__all__ = [
    "Decision",
    "FamilyImage",
    "RotationPolicy",
    "list_family",
    "mark_current",
    "plan",
    "promote",
    "prune",
    "rollback",
]
