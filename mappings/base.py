"""The contract every target mapping follows.

A mapping module exposes one pure conversion function::

    def map_state(state: DesiredState, ctx: MappingContext) -> Iterable[TargetObject]

(the four built-in mappings are generators: the differ compares each object with the
stored one as it comes and keeps only those that changed, so a run that changes little
never holds a whole target's objects at once), and a ``PLACEMENT_ATTRS`` frozenset
naming the attributes whose change is a move (e.g. the AD OU) rather than an update. It
does no I/O and keeps data minimisation: a target gets only the persons and attributes
SPEC says it needs. Attribute values are JSON-able (str, int, bool, None, or lists of
str in a stable order), so the differ can compare them as data. A context that names
the only persons and groups wanted (``MappingContext.only``: a patch) lets it skip the
others' objects; the wanted ones are made as in the whole mapping. Which kind uses which
mapping is the kind's record in ``provisioner.kinds``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from collections.abc import Set as AbstractSet
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
    # The person and group keys whose objects are wanted (a patch maps a few persons and
    # groups among a context of thousands, and every group row): a mapping may skip the
    # work of any other person or group object (``wanted``). It still judges the wanted
    # ones by the whole state: a group's name by all its namesakes, a person's
    # entitlements by all groups. None: every object.
    only: AbstractSet[str] | None = None


def wanted(keys: Iterable[str], ctx: MappingContext) -> Iterable[str]:
    """The person or group keys among ``keys`` (in their order) whose objects ``ctx`` wants."""
    return keys if ctx.only is None else [k for k in keys if k in ctx.only]


def wanted_sorted(keys: Collection[str], ctx: MappingContext) -> list[str]:
    """``wanted(sorted(keys), ctx)``, without sorting every key for the few a patch wants
    (an Oslo-size owner's 254,000 persons sorted to keep one)."""
    if ctx.only is None:
        return sorted(keys)
    return sorted(k for k in ctx.only if k in keys)


MapState = Callable[[DesiredState, MappingContext], Iterable[TargetObject]]
