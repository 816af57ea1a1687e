"""The fingerprints a run keeps for the next run's patch (provisioner/run/incremental.py).

Of the persons' rows (provisioner.core.patch), of each group's membership rows
(provisioner.core.memberships) and of each person's enrollment and employment rows
(provisioner.core.affiliations), kept beside the certificate under the digests of the
source they were taken of (provisioner.state.certificates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from provisioner.core import affiliations, memberships, patch
from provisioner.core.fetched import Fetched
from provisioner.state.certificates import AFFILIATIONS, GROUPS, PERSONS
from provisioner.state.store import StateStore


@dataclass(frozen=True)
class Prints:
    """The fingerprints a later patch compares with: of the persons' rows, of each group's
    membership rows and of each person's enrollments and employments. One that is None
    is carried over from the certificate's source (``carry_from``: a patch left that
    table as it was), or is not kept (a source without digests is never certified, so
    never patched)."""

    persons: patch.PersonPrints | None
    groups: memberships.GroupPrints | None
    affiliations: memberships.GroupPrints | None = None
    carry_from: Mapping[str, str] | None = None

    @classmethod
    def of(cls, fetched: Fetched) -> Prints:
        """The fingerprints of one read (nothing frozen yet)."""
        if not fetched.digests:
            return cls(None, None)
        return cls(
            patch.PersonPrints.of(fetched.person_rows()),
            memberships.GroupPrints.of(fetched.membership_rows()),
            affiliations.prints_of(fetched),
        )

    def frozen(self, persons: Iterable[str], groups: Iterable[str]) -> Prints:
        """With what the run froze (the membership fingerprints keep it)."""
        return replace(self, groups=self.groups.frozen(persons, groups) if self.groups is not None else None)

    def save(self, store: StateStore, source: Mapping[str, str]) -> None:
        """Keep them for the source these digests describe (before its certificate, which
        keeps those of its source only)."""
        if self.persons is not None:
            store.certificates.save_prints(source, self.persons)
        elif self.carry_from is not None:
            store.certificates.carry_prints(self.carry_from, source, which=PERSONS)
        for of, prints in ((GROUPS, self.groups), (AFFILIATIONS, self.affiliations)):
            if prints is not None:
                store.certificates.save_group_prints(source, prints, of)
            elif self.carry_from is not None:
                store.certificates.carry_prints(self.carry_from, source, which=of)
