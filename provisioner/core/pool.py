"""One object per distinct value across a plan's changes: what a first run holds, halved.

A mapping builds every object's values afresh: "Rasmussen", a group's entitlement URN,
the same objectClass list, a (person, role) member pair, are as many objects as the
persons and groups that carry them, and a plan holds them until every change is applied.
At Oslo size a first run's changes held about 0.7 GB in the run process, and a worker
applying the Feide files unpickled its own copy. ``Pool`` gives each distinct value one
object for the plan it is kept for, so equal values are shared in the process and, as
pickle keeps sharing within one dump, in the worker's copy too.

Only text, lists of text and tuples (member pairs) are pooled: 1 and True are equal keys,
and sharing them would change a value's type. Pooled lists are shared between changes,
which is safe because nothing changes a planned value in place (a change is a value).

Pure: plain dicts, freed with the pool when the plan is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.core.model import TargetObject
from provisioner.core.plan import Change
from provisioner.core.rows import shared


class Pool:
    """The shared value of each distinct text, member pair and list of text seen so far."""

    __slots__ = ("_values", "_lists")

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}
        self._lists: dict[tuple[str, ...], list[str]] = {}

    def text(self, value: str) -> str:
        """The pool's string equal to ``value``."""
        got: str = self._values.setdefault(value, value)
        return got

    def values(self, m: Mapping[str, Any]) -> Mapping[str, Any]:
        """``m`` with its text and lists of text replaced by the pool's (empty: ``m`` itself)."""
        if not m:
            return m
        pool, out = self._values, {}
        for k, v in m.items():
            t = type(v)
            if t is str:
                v = pool.setdefault(v, v)
            elif t is list and v and all(type(x) is str for x in v):
                key = tuple(v)
                got = self._lists.get(key)
                if got is None:
                    got = self._lists[key] = list(shared(key, pool))
                v = got
            out[k] = v
        return out

    def obj(self, o: TargetObject) -> TargetObject:
        """``o`` with its attributes, members, placement and links made of pooled values."""
        members = o.members
        # The constructor, not dataclasses.replace: a first run pools ~650,000 objects, and
        # replace looks up the fields again on every call (~1.6 against ~0.7 us each).
        return TargetObject(
            o.kind,
            o.key,
            self.values(o.attrs),
            shared(members, self._values) if members else members,
            o.username,
            o.person_id,
            self.values(o.place),
            self.values(o.links),
        )

    def change(self, c: Change) -> Change:
        """``c`` made of pooled values: its texts, attributes, before, members, placement and
        links. For changes decoded from stored JSON, which makes every value afresh (a
        certified plan applied: provisioner.core.stored ``at_hand``)."""
        text = self.text
        return Change(
            text(c.target),
            c.op,
            text(c.kind),
            c.key,
            text(c.reason),
            c.anchor,
            c.username,
            c.person_id,
            self.values(c.attrs),
            self.values(c.before),
            shared(c.members, self._values) if c.members else c.members,
            self.values(c.place),
            self.values(c.links),
            c.secret,
        )
