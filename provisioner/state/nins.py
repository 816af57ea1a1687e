"""The store's NIN seal key, and the book that gives a sealed NIN back whole from the historic base.

The key (meta ``nin_seal_key``, 32 random bytes) is made the first time a run asks for
it; two processes that ask at once get the one that was stored first. ``NinBook`` is what
a connector that writes a NIN to its target (Feide) is given: it finds the NIN a seal
stands for among the historic base's NINs with the seal's first six digits (one query
per birth date; every NIN once, when a full file asks for thousands of them).
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from provisioner.core.nin_seal import NinSeal, digest_of, is_sealed, prefix
from provisioner.state import schema as t
from provisioner.state.store import StateStore

KEY = "nin_seal_key"
_LOAD_ALL_AFTER = 200  # birth dates asked one by one before every NIN is read at once


def nin_seal(store: StateStore) -> NinSeal:
    """The store's seal (its key made now, at random, if it has none yet)."""
    m = t.meta.c
    with store.engine.begin() as c:
        got = c.execute(sa.select(m.value).where(m.key == KEY)).scalar()
    if got is None:
        try:
            with store.engine.begin() as c:
                c.execute(t.meta.insert().values(key=KEY, value=secrets.token_hex(32)))
        except sa.exc.IntegrityError:
            pass  # another process stored one first: that one is the key
        with store.engine.connect() as c:
            got = c.execute(sa.select(m.value).where(m.key == KEY)).scalar_one()
    return NinSeal(bytes.fromhex(got))


class NinBook:
    """Whole NINs for seals, from the historic base (the only place that keeps them)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.seal = nin_seal(store)
        # Keyed by the seal's 15 digest bytes, not its text: a full file's book holds every
        # NIN of the historic base (250,000 at Oslo size), in a worker beside its plan.
        self._whole: dict[bytes, str] = {}
        self._asked: set[str] = set()
        self._all = False

    def __call__(self, sealed: str) -> str | None:
        """The NIN ``sealed`` stands for; None when the historic base has no such NIN."""
        if not is_sealed(sealed):
            return None
        key = digest_of(sealed)
        p = prefix(sealed)
        if key not in self._whole and not self._all and p not in self._asked:
            self._asked.add(p)
            self._load(None if len(self._asked) > _LOAD_ALL_AFTER else p)
        got = self._whole.get(key)
        # The digest is of the whole NIN: a seal whose six digits are another NIN's is no seal of it.
        return got if got is not None and got[:6] == p else None

    def _load(self, birth: str | None) -> None:
        n = t.person_nins.c
        q = sa.select(n.nin)
        if birth is None:
            self._all = True
        else:  # the NINs that start with these six digits, a range of the primary key
            q = q.where(n.nin >= birth)
            if birth != "999999":  # digits only: the next six digits sort after, in any collation
                q = q.where(n.nin < str(int(birth) + 1).zfill(6))
        with self.store.engine.connect() as c:
            for (nin,) in c.execute(q):
                self._whole[self.seal.digest(nin)] = nin
