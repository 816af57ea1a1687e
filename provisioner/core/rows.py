"""The stored rows planning and apply work with, as plain values (no database in here).

The state store (provisioner/state) reads and writes them; the differ and
``transition`` take and return them. ``dumps``/``digest`` are the canonical encoding
of a target object's content: equal digests mean nothing to change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from provisioner.core.jsontext import canonical
from provisioner.core.quickinit import quick_init
from provisioner.core.states import IdentityStatus, ObjectStatus


def shared(col: tuple[Any, ...], pool: dict[Any, Any] | None = None) -> tuple[Any, ...]:
    """A column of text with each value one string object: the one ``pool`` holds for it.

    A database driver makes a new string for every cell, so a value that repeats (a role,
    a day, an id other rows refer to) is as many objects as rows: at Oslo size "student"
    alone was 925,000 of them. ``pool`` (kept by the caller) shares them across columns
    and tables too. Only for text and None: 1 and True are equal keys, and sharing them
    would change a value's type. C-level steps only.
    """
    pool = {} if pool is None else pool
    fresh = set(col).difference(pool)  # a set minus a dict walks the set, not the whole pool
    pool.update(zip(fresh, fresh))
    return tuple(map(pool.__getitem__, col))


# Canonical JSON: the same data always gives the same text (and digest). The very
# function, not a wrapper: a full plan encodes about a million objects.
dumps = canonical


def digest(kind: str, attrs: Mapping[str, Any], members: Iterable[Iterable[str]] | None) -> str:
    """Hash of what a target object holds; equal digests mean nothing to change."""
    if members is not None and not isinstance(members, tuple):
        members = [list(m) for m in members]  # a tuple of pairs is written as it is
    return digest_json(kind, dumps(attrs), None if members is None else dumps(members))


def digest_json(kind: str, attrs_json: str, members_json: str | None) -> str:
    """digest() from already-encoded attributes and members (the writer has them at hand)."""
    body = f"{kind}\x00{attrs_json}\x00{members_json}"
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


@quick_init
@dataclass(frozen=True, slots=True)
class IndexRow:
    """What planning needs of every stored object, without its attributes."""

    kind: str
    anchor: str | None
    status: ObjectStatus
    status_since: str | None
    digest: str
    person_id: str | None
    username: str | None


@dataclass(frozen=True, slots=True)
class IdentityRow:
    """One person's identity record."""

    username: str
    nin: str | None
    display_name: str | None
    status: IdentityStatus
    inactive_since: str | None
    roles: str | None = None  # "role@school,..." as last applied
    bridged_until: str | None = None  # summer bridge recorded: the day the next affiliation starts


class ObjectRow(NamedTuple):
    """One stored target object whole: what ``transition`` takes and returns."""

    kind: str
    anchor: str | None
    status: ObjectStatus
    status_since: str | None
    person_id: str | None
    username: str | None
    attrs: Mapping[str, Any]
    members: frozenset[tuple[str, str]] | None  # groups: (person_id, role) pairs
