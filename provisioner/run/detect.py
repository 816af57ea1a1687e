"""What changed in the SIS since the certified read, for a patch (provisioner/run/incremental.py).

By the fingerprints kept beside the certificate (provisioner.state.certificates): which
groups' membership rows changed (provisioner.core.memberships), and which persons'
enrollment and employment rows (provisioner.core.affiliations). Each is None when a patch
may not take it (too many, rows no fingerprint can be taken of, nothing kept), and the
run plans in full.

When persons joined and a table changed by their rows alone, only their rows and groups
are fingerprinted, not a million: the source proves it (the table without the rows that
name a joiner has the certified digest, ``Fetched.digest_without``); a source that cannot
say is fingerprinted whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from itertools import compress
from operator import itemgetter

from provisioner.core import affiliations, memberships, patch
from provisioner.core.certificate import Certificate
from provisioner.core.fetched import Fetched
from provisioner.state.certificates import AFFILIATIONS
from provisioner.state.store import StateStore


def affiliations_of(
    store: StateStore, cert: Certificate, read: Fetched, joined: frozenset[str]
) -> affiliations.Changed | None:
    """The persons whose enrollment or employment rows changed since the certified read."""
    before = store.certificates.group_prints(cert.source, AFFILIATIONS)
    if before is None:
        found = None
    elif only_theirs(read, cert, affiliations.TABLES, joined):
        found = affiliations.changed_among(before, read, joined, patch.person_limit(read))
    else:
        found = affiliations.changed(before, read, patch.person_limit(read))
    # No one changed: the rows were only reordered, which moves nothing but errors.
    return found if found is not None and found.persons else None


def memberships_of(
    store: StateStore, cert: Certificate, read: Fetched, joined: frozenset[str]
) -> memberships.ChangedGroups | None:
    """The groups whose membership rows changed since the certified read."""
    before = store.certificates.group_prints(cert.source)
    rows = read.membership_rows()
    limit = memberships.limit_for(read.count("groups"))
    if before is None:
        found = None
    elif only_theirs(read, cert, ("memberships",), joined):
        groups = {r[0] for r in compress(rows, map(joined.__contains__, map(itemgetter(1), rows)))}
        theirs = compress(rows, map(groups.__contains__, map(itemgetter(0), rows)))
        found = memberships.changed_among(before, theirs, groups, len(rows), limit)
    else:
        found = memberships.changed_groups(before, rows, limit)
    # A group frozen before may be judged now, which changes every member's Feide entitlements,
    # not only those of the persons on its changed rows. It also covers the data errors a
    # patch could not drop: a broken membership row, or group row, freezes its group.
    # (No group changed: the rows were only reordered, which moves nothing but errors.)
    if found is None or not found.groups or found.groups & found.prints.frozen_groups:
        return None
    # The groups' rows before are not asked for again: a wide patch's (a few hundred
    # thousand rows at Oslo size) would stay for the whole derivation.
    return replace(found, was={})


def only_theirs(read: Fetched, cert: Certificate, tables: Iterable[str], joined: frozenset[str]) -> bool:
    """Whether persons joined and each table, without the rows that name one of them, is the
    table as it was (a source that cannot say: no)."""
    if not joined:
        return False
    for table in tables:
        was = read.digest_without(table, ("person_id",), joined)
        if was is None or was != cert.source.get(table):
            return False
    return True
