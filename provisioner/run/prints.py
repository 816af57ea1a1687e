"""The fingerprints a run keeps for the next run's patch (provisioner/run/incremental.py).

Of the persons' rows (provisioner.core.patch) and of each group's membership rows
(provisioner.core.memberships), kept beside the certificate under the digests of the
source they were taken of (provisioner.state.certificates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from provisioner.core import memberships, patch
from provisioner.core.fetched import Fetched
from provisioner.state.store import StateStore


@dataclass(frozen=True)
class Prints:
    """The fingerprints a later patch compares with: of the persons' rows and of each group's
    membership rows. One that is None is carried over from the certificate's source
    (``carry_from``: a patch left that table as it was), or is not kept (a source without
    digests is never certified, so never patched)."""

    persons: patch.PersonPrints | None
    groups: memberships.GroupPrints | None
    carry_from: Mapping[str, str] | None = None

    @classmethod
    def of(cls, fetched: Fetched) -> Prints:
        """The fingerprints of one read (nothing frozen yet)."""
        if not fetched.digests:
            return cls(None, None)
        return cls(
            patch.PersonPrints.of(fetched.person_rows()),
            memberships.GroupPrints.of(fetched.membership_rows()),
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
            store.certificates.carry_prints(self.carry_from, source, groups=False)
        if self.groups is not None:
            store.certificates.save_group_prints(source, self.groups)
        elif self.carry_from is not None:
            store.certificates.carry_prints(self.carry_from, source, groups=True)
