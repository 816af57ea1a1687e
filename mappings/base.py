"""The contract every target mapping follows.

A mapping module exposes one pure conversion function::

    def map_state(state: DesiredState, ctx: MappingContext) -> Iterable[TargetObject]

(the four built-in mappings are generators: the differ compares each object with the
stored one as it comes and keeps only those that changed, so a run that changes little
never holds a whole target's objects at once), and a ``PLACEMENT_ATTRS`` frozenset
naming the attributes whose change is a move (e.g. the AD OU) rather than an update. It
does no I/O and keeps data minimisation: a target gets only the persons and attributes
SPEC says it needs. Attribute values are JSON-able (str, int, bool, None, or lists of
str in a stable order), so the differ can compare them as data. Which kind uses which
mapping is the kind's record in ``provisioner.kinds``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    # How an attribute that carries a NIN holds it (provisioner.core.nin_seal): a run
    # seals it with the store's key; None (a mapping run with no store: tests, tools)
    # gives the NIN as it is.
    seal: Callable[[str], str] | None = None


MapState = Callable[[DesiredState, MappingContext], Iterable[TargetObject]]
