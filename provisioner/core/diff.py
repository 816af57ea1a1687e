"""The differ: desired target objects against the state store's record -> changes.

Pure: everything it compares is handed to it (the index of stored objects, the
attributes of those whose digest differs, identities, lifecycle policy). Each change
carries its reason. Within a target, changes are ordered so that apply works in one
pass: containers and persons first, then groups and members, removals last.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.core.lifecycle import Policy, days_between
from provisioner.core.local import is_local
from provisioner.core.model import DesiredPerson, TargetObject
from provisioner.core.plan import CORE, Change, Op
from provisioner.core.pool import Pool
from provisioner.core.rows import IdentityRow, IndexRow, digest
from provisioner.core.states import IdentityStatus, ObjectStatus

# Apply order by (phase); lower first.
_KIND_RANK = {"org": 0, "orgunit": 1, "person": 2, "group": 3}


@dataclass
class Compared:
    """A target's desired objects against its stored rows, the unchanged ones left out.

    ``desired`` holds the objects with something to do (new, changed, not active), with
    their ``digests`` ("" for a new one: the writer computes its digest when it stores
    it); ``stored`` the keys among them the target holds, whose stored attributes the
    differ must see (``store.objects.details``); ``unchanged`` the keys of the others,
    which the differ must still count as desired (or it would retire them).
    """

    desired: list[TargetObject]
    digests: list[str]
    stored: list[str]
    unchanged: set[str]


def compared(
    objs: Iterable[TargetObject], index: Mapping[str, IndexRow], pool: Pool | None = None
) -> Compared:
    """Compare mapped objects with the index as they come, keeping only the ones to diff.

    A mapping yields its objects one at a time: a run that changes little holds only the
    index and the few changed objects, never the whole target's objects at once (at Oslo
    size ~0.2 GB for itslearning's 290,000). The kept objects are made of ``pool``'s
    values (a plan shares one pool among its targets; provisioner.core.pool), as their
    changes are held until applied.
    """
    out = Compared([], [], [], set())
    active = ObjectStatus.ACTIVE
    if pool is None:
        pool = Pool()
    for o in objs:
        row = index.get(o.key)
        if row is None:
            out.desired.append(pool.obj(o))
            out.digests.append("")
            continue
        dig = digest(o.kind, o.record(), o.members)
        if row.status == active and row.digest == dig:
            out.unchanged.add(o.key)
            continue
        out.desired.append(pool.obj(o))
        out.digests.append(dig)
        out.stored.append(o.key)
    return out


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def why_active(p: DesiredPerson, school_names: Mapping[str, str]) -> str:
    """The source facts that make a person active, in words."""
    parts = [f"{role} at {school_names.get(s, s)}" for s, role in p.affiliations]
    if is_local(p.person_id):  # the changelog names the admin's local record, not the SIS
        return f"active by local record {p.person_id}: " + ", ".join(parts)
    # Interned: thousands of persons share each text, and a plan holds one per change.
    return sys.intern("active in SIS: " + ", ".join(parts))


def _attr_changes(
    obj: TargetObject, current: Mapping[str, Any], placement: frozenset[str], links: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(update attrs, update links, update before, move place, move before).

    ``current`` is the stored record (attributes, placement and links in one mapping); a
    value the object no longer has is sorted by the kind's ``placement`` and ``links``.
    """
    upd, upd_l, upd_b, mov, mov_b = {}, {}, {}, {}, {}
    desired = obj.record()
    for k in desired.keys() | current.keys():
        new, old = _norm(desired.get(k)), current.get(k)
        if new != old:
            if k in obj.place or (k in placement and k not in desired):
                mov[k], mov_b[k] = new, old
            elif k in obj.links or (k in links and k not in desired):
                upd_l[k], upd_b[k] = new, old
            else:
                upd[k], upd_b[k] = new, old
    return upd, upd_l, upd_b, mov, mov_b


def diff_target(
    target: str,
    desired: Sequence[TargetObject],
    digests: Sequence[str],
    index: Mapping[str, IndexRow],
    details: Mapping[str, tuple[Mapping[str, Any], list[tuple[str, str]] | None]],
    *,
    policy: Policy,
    placement: frozenset[str],
    links: frozenset[str] = frozenset(),
    persons: Mapping[str, DesiredPerson],
    identities: Mapping[str, IdentityRow],
    frozen: frozenset[str],
    school_names: Mapping[str, str],
    as_of: str,
    bridged: Mapping[str, str] | None = None,
    ended: Mapping[str, str] | None = None,
    unchanged: Collection[str] = frozenset(),
    changed_in: str = "SIS",
) -> list[Change]:
    """All changes that bring one target from its stored state to the desired one.

    ``unchanged``: keys of desired objects left out of ``desired`` because they equal
    their active stored row (``compared``): desired all the same, never retired.

    ``bridged`` (Derivation.bridged): persons whose objects stay exactly as they are (not
    disabled, moved or deleted); only their group memberships end. ``ended``
    (Derivation.ended): the SIS end date of persons not active, where lifecycle clocks start.
    ``placement`` and ``links``: the kind's names of place and link values (TargetKind).
    ``changed_in``: where an updated or moved object's new values come from, as its reason
    says: "SIS", or "SIS or config" while the target's objects were last brought in line
    under another config (provisioner/run/targets.py ``changed_in``).
    """
    bridged = bridged or {}
    first: list[Change] = []  # creates, restores, enables, updates, moves (persons, groups)
    adds: list[Change] = []
    removes: list[Change] = []
    gone: list[Change] = []  # disables and deletes
    seen: set[str] = set()

    def reason_for(obj: TargetObject) -> str:
        if obj.kind == "person" and obj.person_id is not None and obj.person_id in persons:
            return why_active(persons[obj.person_id], school_names)
        if obj.kind == "group":
            return f"group {obj.attrs.get('name') or obj.key} is active in SIS"
        return "school owner and schools in SIS"

    for obj, dig in zip(desired, digests):
        key = obj.key
        seen.add(key)
        row = index.get(key)
        common: dict[str, Any] = {
            "target": target,
            "kind": obj.kind,
            "key": key,
            "username": obj.username,
            "person_id": obj.person_id,
        }
        if row is not None and row.status == ObjectStatus.ACTIVE and row.digest == dig:
            continue
        restorable = (
            row is not None
            and row.status == ObjectStatus.DELETED
            and policy.soft_delete
            and days_between(row.status_since, as_of) < policy.restore_within_days
        )
        if row is None or (row.status == ObjectStatus.DELETED and not restorable):
            first.append(
                Change(
                    op=Op.CREATE,
                    reason=reason_for(obj),
                    attrs=obj.attrs,
                    place=obj.place,
                    links=obj.links,
                    **common,
                )
            )
            if obj.members:
                adds.append(
                    Change(
                        op=Op.ADD_MEMBERS,
                        reason=f"members of {obj.key} in SIS",
                        members=obj.members,
                        **common,
                    )
                )
            continue
        anchor = row.anchor
        cur_attrs, cur_members = details.get(key, ({}, None))
        if restorable:
            # The desired attributes go along: if the target finds nothing to restore (purged
            # from deleted items meanwhile), it creates the object again from them.
            first.append(
                Change(
                    op=Op.RESTORE,
                    anchor=anchor,
                    attrs=obj.attrs,
                    place=obj.place,
                    links=obj.links,
                    reason="active again: " + reason_for(obj),
                    **common,
                )
            )
        if row.status in (ObjectStatus.DISABLED, ObjectStatus.DELETED):
            # The desired placement goes along, so a target that parked a disabled object
            # (AD's disabled OU) can put it back where it now belongs.
            first.append(
                Change(
                    op=Op.ENABLE,
                    anchor=anchor,
                    place=obj.place,
                    reason="active again: " + reason_for(obj),
                    **common,
                )
            )
        upd, upd_l, upd_b, mov, mov_b = _attr_changes(obj, cur_attrs, placement, links)
        if mov:
            first.append(
                Change(
                    op=Op.MOVE,
                    anchor=anchor,
                    place=mov,
                    before=mov_b,
                    reason=f"changed in {changed_in}: {', '.join(sorted(mov))}",
                    **common,
                )
            )
        if upd or upd_l:
            first.append(
                Change(
                    op=Op.UPDATE,
                    anchor=anchor,
                    attrs=upd,
                    links=upd_l,
                    before=upd_b,
                    reason=f"changed in {changed_in}: {', '.join(sorted(upd_b))}",
                    **common,
                )
            )
        if obj.members is not None:
            want, have = set(obj.members), set(cur_members or ())
            if want - have:
                adds.append(
                    Change(
                        op=Op.ADD_MEMBERS,
                        anchor=anchor,
                        members=tuple(sorted(want - have)),
                        reason=f"joined {obj.attrs.get('name') or key} in SIS",
                        **common,
                    )
                )
            # A member whose source record is broken this run stays where they are.
            leaving = {m for m in have - want if m[0] not in frozen}
            if leaving:
                removes.append(
                    Change(
                        op=Op.REMOVE_MEMBERS,
                        anchor=anchor,
                        members=tuple(sorted(leaving)),
                        reason=f"left {obj.attrs.get('name') or key} in SIS",
                        **common,
                    )
                )

    for key, row in index.items():
        if key in seen or key in unchanged or row.status == ObjectStatus.DELETED and not policy.soft_delete:
            continue
        if key in frozen or (row.person_id is not None and row.person_id in frozen):
            continue  # its source record is broken this run: leave it as it is
        if row.kind == "person" and (row.person_id or key) in bridged:
            continue  # summer bridge: kept as it is until the next affiliation starts
        gone.extend(_retire(target, key, row, policy, persons, identities, ended or {}, as_of))

    first.sort(key=lambda c: _KIND_RANK.get(c.kind, 9))
    # Removals by kind (groups before their members), then by key: the order a patch can
    # place a new one in (provisioner.core.patch), whatever order the index was read in.
    gone.sort(key=lambda c: (-_KIND_RANK.get(c.kind, 9), c.key))
    return first + adds + removes + gone


def _retire(
    target: str,
    key: str,
    row: IndexRow,
    policy: Policy,
    persons: Mapping[str, DesiredPerson],
    identities: Mapping[str, IdentityRow],
    ended: Mapping[str, str],
    as_of: str,
) -> Iterable[Change]:
    """Disable/delete changes for a stored object that is no longer desired.

    A person who stopped in the SIS is counted from their SIS end date (``ended``), so a
    delete falls due ``delete_after_days`` after that date however late BAS noticed.
    """
    common: dict[str, Any] = {
        "target": target,
        "kind": row.kind,
        "key": key,
        "anchor": row.anchor,
        "username": row.username,
        "person_id": row.person_id,
    }
    if row.kind != "person":
        if row.status != ObjectStatus.DELETED:
            yield Change(op=Op.DELETE, reason=f"{row.kind} {key} is no longer active in SIS", **common)
        return
    pid = row.person_id or key
    sis_end = None if pid in persons else ended.get(pid)
    if pid in persons:
        why = f"still active, but no longer in scope for {target}"
        since = as_of
    elif sis_end is not None and is_local(pid):
        since = sis_end
        why = f"local record {pid} ended on {since} (its end date)"
    elif sis_end is not None:
        since = sis_end
        why = f"no active enrollment, employment or student in SIS since {since} (SIS end date)"
    else:  # no dated record left in the SIS: counted from when BAS noticed
        ident = identities.get(pid)
        since = ident.inactive_since if ident and ident.inactive_since else as_of
        why = f"no active enrollment, employment or student in SIS since {since}"
    if row.status == ObjectStatus.DELETED:
        return  # soft-deleted; the target purges it (Microsoft after 30 days)
    if policy.disable_first:
        # The delete clock runs from the SIS end date when there is one, else from the disable.
        due = days_between(sis_end, as_of) >= policy.delete_after_days if sis_end else False
        if row.status == ObjectStatus.ACTIVE:
            yield Change(op=Op.DISABLE, reason=why, **common)
            if policy.delete_after_days == 0:
                yield Change(op=Op.DELETE, reason=why + "; deleted the same day", **common)
            elif due:
                yield Change(op=Op.DELETE, reason=f"{why}; {policy.delete_after_days} days passed", **common)
        elif due or (sis_end is None and days_between(row.status_since, as_of) >= policy.delete_after_days):
            yield Change(op=Op.DELETE, reason=f"{why}; disabled since {row.status_since}", **common)
    elif pid in persons or days_between(since, as_of) >= policy.delete_after_days:
        # The grace is for persons who stop in the SIS (their stop date is known); one who
        # is still active but out of this target's scope has no such date and goes now.
        yield Change(op=Op.DELETE, reason=why, **common)


def diff_core(
    persons: Mapping[str, DesiredPerson],
    identities: Mapping[str, IdentityRow],
    *,
    new_usernames: Mapping[str, str],
    new_aliases: Mapping[str, str],
    frozen: frozenset[str],
    live: frozenset[str] | set[str],
    retention_days: int,
    school_names: Mapping[str, str],
    as_of: str,
    inactive_nins: Mapping[str, str] | None = None,
    bridged: Mapping[str, str] | None = None,
    ended: Mapping[str, str] | None = None,
    pool: Pool | None = None,
) -> list[Change]:
    """Identity changes: usernames issued, persons stopping or returning, purges, aliases.

    ``inactive_nins``: new NINs of known persons who are not active (Derivation.inactive_nins).
    ``bridged``/``ended``: the summer bridge and SIS end dates (Derivation.bridged/ended): a
    bridged person stays active with the bridge recorded ("bridged until DAY"); one who
    stops is inactive since their SIS end date, where the retention clock starts.
    ``pool``: shares names, roles and reasons with the rest of the plan (provisioner.core.pool).

    Aliases first, then person by person in person-id order: a plan patched for a few
    persons (provisioner/run/incremental.py) puts theirs where a full plan has them.
    """
    out: list[Change] = []
    for sis_id, canon in sorted(new_aliases.items()):
        out.append(
            Change(
                target=CORE,
                op=Op.CREATE,
                kind="alias",
                key=sis_id,
                person_id=canon,
                attrs={"person_id": canon},
                reason=f"SIS id {sis_id} has the NIN of known person {canon}: the same person returns",
            )
        )
    inactive = _Inactive(inactive_nins or {}, bridged or {}, ended or {}, live, retention_days, as_of)
    if pool is None:
        pool = Pool()
    for pid in sorted(persons.keys() | identities.keys()):
        p = persons.get(pid)
        if p is not None:
            out.extend(_active(p, identities.get(pid), new_usernames, school_names, pool))
        elif pid not in frozen:
            out.extend(inactive.changes(pid, identities[pid]))
    return out


def _active(
    p: DesiredPerson,
    row: IdentityRow | None,
    new_usernames: Mapping[str, str],
    school_names: Mapping[str, str],
    pool: Pool,
) -> Iterator[Change]:
    """The identity change of an active person: issued, returning, or changed in the SIS."""
    roles = _roles(p)
    if (
        row is not None
        and row.status == IdentityStatus.ACTIVE
        and row.bridged_until is None
        and p.nin == row.nin
        and p.display_name == row.display_name
        and roles == row.roles
    ):
        return  # nearly every person on every run: known unchanged before any change is built
    pid = p.person_id
    attrs = {
        "username": p.username,
        "nin": p.nin,
        "display_name": pool.text(p.display_name),
        "roles": pool.text(roles),
    }
    common: dict[str, Any] = {
        "target": CORE,
        "kind": "identity",
        "key": pid,
        "person_id": pid,
        "username": p.username,
    }
    if row is None:
        how = "issued" if pid in new_usernames else "from the historic base"
        why = pool.text(f"{why_active(p, school_names)}; username {how}")
        yield Change(op=Op.CREATE, attrs=attrs, reason=why, **common)
        return
    if row.status != IdentityStatus.ACTIVE:
        yield Change(op=Op.ENABLE, attrs=attrs, reason="returns: " + why_active(p, school_names), **common)
        return
    cur = {"nin": row.nin, "display_name": row.display_name, "roles": row.roles}
    changed = {k: attrs[k] for k in ("nin", "display_name", "roles") if attrs[k] != cur[k]}
    before = {k: cur[k] for k in changed}
    why = f"changed in SIS: {', '.join(sorted(changed))}"
    if row.bridged_until is not None:
        changed["bridged_until"], before["bridged_until"] = None, row.bridged_until
        why = "bridge over: " + why_active(p, school_names)
    if changed:
        yield Change(op=Op.UPDATE, attrs=changed, before=before, reason=why, **common)


def inactive_changes(
    identities: Mapping[str, IdentityRow], live: Collection[str], retention_days: int, as_of: str
) -> list[Change]:
    """What diff_core plans for these identities when none of their persons is active and
    the SIS tells nothing new of them (no new NIN, bridge or end date): a disable of one
    still recorded active, or a purge once retention passed and no target holds them
    (``live``: the persons with an object not deleted in an enabled target)."""
    inactive = _Inactive({}, {}, {}, set(live), retention_days, as_of)
    return [c for pid, row in sorted(identities.items()) for c in inactive.changes(pid, row)]


@dataclass(frozen=True)
class _Inactive:
    """What the identity changes of persons not active this run depend on."""

    inactive_nins: Mapping[str, str]
    bridged: Mapping[str, str]
    ended: Mapping[str, str]
    live: frozenset[str] | set[str]
    retention_days: int
    as_of: str

    def changes(self, pid: str, row: IdentityRow) -> Iterator[Change]:
        """A new NIN recorded, a bridge, a stop, or a purge once retention passed."""
        common: dict[str, Any] = {
            "target": CORE,
            "kind": "identity",
            "key": pid,
            "person_id": pid,
            "username": row.username,
        }
        new_nin = self.inactive_nins.get(pid)
        if new_nin and new_nin != row.nin and row.status in (IdentityStatus.ACTIVE, IdentityStatus.INACTIVE):
            # Recorded while they are away, so a return under a new SIS id with the new
            # NIN is recognised as the same person (and gets the same username).
            yield Change(
                op=Op.UPDATE,
                attrs={"nin": new_nin},
                before={"nin": row.nin},
                reason="NIN changed in SIS while not active",
                **common,
            )
        until = self.bridged.get(pid)
        if until is not None:
            if row.status == IdentityStatus.ACTIVE and row.bridged_until != until:
                yield _bridge(until, self.ended.get(pid), row, common)
            return  # accounts stay as they are until the next affiliation starts
        if row.status == IdentityStatus.ACTIVE:
            since = self.ended.get(pid)
            yield Change(
                op=Op.DISABLE,
                attrs={"inactive_since": since or self.as_of},
                reason=f"local record {pid} ended on {since} (its end date)"
                if since and is_local(pid)
                else "no active enrollment, employment or student in SIS"
                + (f" since {since} (SIS end date)" if since else ""),
                **common,
            )
        elif (
            row.status == IdentityStatus.INACTIVE
            and pid not in self.live
            and days_between(row.inactive_since, self.as_of) >= self.retention_days
        ):
            yield Change(
                op=Op.PURGE,
                reason=f"inactive since {row.inactive_since}, every target done, "
                f"retention of {self.retention_days} days passed; username and NIN stay in the historic base",
                **common,
            )


def _bridge(until: str, end: str | None, row: IdentityRow, common: dict[str, Any]) -> Change:
    """The core change that records a summer bridge (its reason lands in the changelog)."""
    return Change(
        op=Op.UPDATE,
        attrs={"bridged_until": until},
        before={"bridged_until": row.bridged_until},
        reason=f"bridged until {until}: ended in SIS on {end} (SIS end date), the next affiliation"
        f" starts {until}; every account stays as it is",
        **common,
    )


def _roles(p: DesiredPerson) -> str:
    return ",".join(f"{role}@{school}" for school, role in p.affiliations)
