"""The contract every target mapping follows.

A mapping module exposes one pure conversion function::

    def map_state(state: DesiredState, ctx: MappingContext) -> list[TargetObject]

and a ``PLACEMENT_ATTRS`` frozenset naming the attributes whose change is a move
(e.g. the AD OU) rather than an update. It does no I/O and keeps data minimisation:
a target gets only the persons and attributes SPEC says it needs. Attribute values are
JSON-able (str, int, bool, None, or lists of str in a stable order), so the differ can
compare them as data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provisioner.config import OwnerConfig
from provisioner.core.model import DesiredState, TargetObject


@dataclass(frozen=True)
class MappingContext:
    """What a mapping may know besides the desired state."""

    owner: OwnerConfig
    target: Any  # the target's config model (ADConfig, M365Config, ...)
    as_of: str  # ISO date the desired state was derived for


MapState = Callable[[DesiredState, MappingContext], list[TargetObject]]


def mapping_for(kind: str) -> tuple[MapState, frozenset[str]]:
    """The map_state function and placement attributes of a target kind."""
    if kind == "ad":
        from mappings import ad as mod
    elif kind == "m365":
        from mappings import m365 as mod
    elif kind == "itslearning":
        from mappings import itslearning as mod
    elif kind == "feide":
        from mappings import feide as mod
    else:
        raise ValueError(f"no mapping for target kind {kind!r}")
    return mod.map_state, mod.PLACEMENT_ATTRS
