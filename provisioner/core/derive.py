"""Deriving the desired state from a source snapshot: pure, no target I/O.

Validation happens here: a bad record becomes a DataError and is skipped; the run
goes on. A person (or group) whose own record is broken is *frozen*: the differ leaves
their existing accounts alone instead of treating them as gone, so a typo in the SIS
never deprovisions anyone. Activity follows the schema's rules for the day ``as_of``.
Usernames come from the historic base (same person_id, or same NIN under a new id);
only persons new to the base get a freshly allocated one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field

from provisioner.config import LifecycleConfig, UsernameConfig
from provisioner.core import activity, names, nin, usernames, validate
from provisioner.core.model import (
    ALL_ROLES,
    GUARDIAN,
    SCHOOL_GROUP_ROLES,
    SCHOOL_WIDE,
    STUDENT,
    TEACHER,
    TEACHING,
    DataError,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    Person,
    School,
    SourceSnapshot,
    Study,
    school_group_key,
)

_ROLE_ORDER = {r: i for i, r in enumerate(ALL_ROLES)}
_MEMBER_ROLES = (STUDENT, TEACHER)


@dataclass(frozen=True)
class IdentityView:
    """What derivation needs from the historic base (read before, never during)."""

    username_by_person: Mapping[str, str] = field(default_factory=dict)  # canonical id -> username
    person_by_nin: Mapping[str, str] = field(default_factory=dict)  # any NIN ever seen -> canonical id
    aliases: Mapping[str, str] = field(default_factory=dict)  # SIS id -> canonical id
    taken: Container[str] = frozenset()  # every username ever issued or reserved


@dataclass(frozen=True)
class Derivation:
    """The desired state plus what the differ must know about skipped records."""

    state: DesiredState
    frozen_persons: frozenset[str]  # canonical ids whose records are broken: leave alone
    frozen_groups: frozenset[str]
    new_aliases: Mapping[str, str]  # SIS id -> canonical id, found this run by NIN
    # Known persons not active this run whose SIS record has a NIN the historic base lacks
    # (a D-number replaced by a fødselsnummer while they were away): canonical id -> NIN.
    inactive_nins: Mapping[str, str] = field(default_factory=dict)
    # Persons not active whose next affiliation starts within bridge_days (provisioner.core.activity):
    # canonical id -> the day it starts. Their accounts stay exactly as they are until then.
    bridged: Mapping[str, str] = field(default_factory=dict)
    # Persons not active (bridged ones included): canonical id -> their SIS end date, the last
    # day of their latest window. Lifecycle clocks count from it, not from when BAS noticed.
    ended: Mapping[str, str] = field(default_factory=dict)


def _active(start: str | None, end: str | None, day: str) -> bool:
    return start is not None and start <= day and (end is None or end >= day)


def _check_persons(
    snap: SourceSnapshot, ident: IdentityView, today: dt.date, errors: list[DataError]
) -> tuple[dict[str, Person], set[str], dict[str, str]]:
    """Valid persons by canonical id, the frozen ids, and newly found aliases."""
    frozen: set[str] = set()
    times = Counter(p.person_id for p in snap.persons)
    checked: list[Person] = []
    by_nin: dict[str, list[str]] = defaultdict(list)
    for p in snap.persons:
        pid = p.person_id
        own = ident.aliases.get(pid, pid)
        if times[pid] > 1:
            if own not in frozen:
                errors.append(
                    DataError(
                        "duplicate_person", f"person:{pid}", f"person_id appears {times[pid]} times; skipped"
                    )
                )
            frozen.add(own)
            continue
        given, family = names.clean(p.given_name), names.clean(p.family_name)
        if not given or not family:
            which = "given name" if not given else "family name"
            errors.append(DataError("missing_name", f"person:{pid}", f"{which} is missing; person skipped"))
            frozen.add(own)
            continue
        n = p.nin.strip() if p.nin is not None and p.nin.strip() else None
        if n is not None:
            try:
                nin.validate(n, today)
            except nin.InvalidNIN as exc:
                errors.append(
                    DataError(
                        "invalid_nin",
                        f"person:{pid}",
                        f"NIN {nin.mask(n)} is invalid ({exc}); person skipped",
                    )
                )
                frozen.add(own)
                continue
            by_nin[n].append(pid)
        middle = names.clean(p.middle_name) or None
        if (n, given, family, middle) != (p.nin, p.given_name, p.family_name, p.middle_name):
            p = p._replace(nin=n, given_name=given, family_name=family, middle_name=middle)
        checked.append(p)  # (most rows are clean already: the row itself, not a copy of it)
    # One NIN on several SIS persons: the first-known holder keeps it, and only the
    # newcomers are skipped (and frozen) until the SIS is corrected.
    skip: set[str] = set()
    for n, pids in by_nin.items():
        if len(pids) < 2:
            continue
        keep = _nin_holder(n, pids, ident)
        for pid in pids:
            if pid == keep:
                continue
            others = ", ".join(x for x in pids if x != pid)
            errors.append(
                DataError(
                    "duplicate_nin",
                    f"person:{pid}",
                    f"NIN {nin.mask(n)} is also used by {others}; person skipped until the SIS is corrected",
                )
            )
            skip.add(pid)
            frozen.add(ident.aliases.get(pid, pid))
    # Canonical ids; a returning person under a new SIS id (same NIN as someone the base
    # knows) becomes an alias of that person.
    new_aliases: dict[str, str] = {}
    by_canon: dict[str, list[Person]] = defaultdict(list)
    for p in checked:
        pid = p.person_id
        if pid in skip:
            continue
        canon = ident.aliases.get(pid, pid)
        known = ident.person_by_nin.get(p.nin) if p.nin else None
        if known is not None and known != canon and canon not in ident.username_by_person:
            new_aliases[pid] = known
            canon = known
        by_canon[canon].append(p)
    valid: dict[str, Person] = {}
    for canon, recs in by_canon.items():
        if len(recs) == 1:
            valid[canon] = recs[0]
            continue
        # Several SIS records are one person in the historic base: none can be trusted.
        ids = [p.person_id for p in recs]
        for pid in ids:
            errors.append(
                DataError(
                    "duplicate_person",
                    f"person:{pid}",
                    f"SIS ids {', '.join(ids)} are the same person {canon} in the historic base;"
                    " skipped until the SIS is corrected",
                )
            )
            new_aliases.pop(pid, None)
        frozen.add(canon)
    return valid, frozen, new_aliases


def _nin_holder(n: str, pids: list[str], ident: IdentityView) -> str | None:
    """Which of the SIS persons sharing NIN ``n`` holds it; None when that cannot be told.

    The one the historic base ties the NIN to; else, when the base does not know the
    NIN, the one person the base already knows; else, when it knows none of them, the
    older record (the first the SIS returns). A copy of someone's NIN on a broken or new
    record never costs the holder their accounts.
    """
    canon = [ident.aliases.get(pid, pid) for pid in pids]
    owner = ident.person_by_nin.get(n)
    if owner is not None:
        held = [pid for pid, c in zip(pids, canon) if c == owner]
        return held[0] if len(held) == 1 else None
    known = [pid for pid, c in zip(pids, canon) if c in ident.username_by_person]
    if len(known) > 1:
        return None
    return known[0] if known else pids[0]


def derive(
    snap: SourceSnapshot,
    as_of: str,
    ident: IdentityView,
    cfg: UsernameConfig,
    lifecycle: LifecycleConfig | None = None,
) -> Derivation:
    """Validate the snapshot and derive who should exist and in which groups on ``as_of``.

    ``lifecycle`` widens the active windows and sets the summer bridge (defaults if None).
    """
    errors: list[DataError] = []
    # Every value is checked first: a broken row is reported and freezes what it is about.
    snap, broken = validate.check_rows(snap, errors)
    lc = lifecycle or LifecycleConfig()
    clocks = activity.Clocks(as_of)  # every role, for the bridge and the SIS end date
    student_clocks = activity.Clocks(as_of)  # enrollments only: what guardians follow
    shifted: dict[tuple[str, int], str] = {}  # window dates, each shifted once
    schools = {s.school_id: s for s in snap.schools}
    persons, frozen_p, new_aliases = _check_persons(snap, ident, dt.date.fromisoformat(as_of), errors)
    alias = {**ident.aliases, **new_aliases}

    def canon(pid: str) -> str:
        return alias.get(pid, pid)

    frozen_p.update(map(canon, broken.persons))
    snap = validate.check_references(snap, persons, canon, frozen_p, broken, errors)
    persons = {pid: p for pid, p in persons.items() if pid not in frozen_p}

    # Activity: (school, role) pairs per person.
    aff: dict[str, set[tuple[str, str]]] = defaultdict(set)
    primary: dict[str, tuple[int, str, str]] = {}  # pid -> (rank, start, school) lowest wins
    grade: dict[str, int | None] = {}
    studies: dict[str, set[Study]] = defaultdict(set)
    # Validation left only rows with good values and known schools and persons; a row of a
    # person frozen meanwhile (by another of their rows) is passed over.
    for e in snap.enrollments:
        pid = canon(e.person_id)
        if pid not in persons:
            continue
        win = activity.window(STUDENT, e.start_date, e.end_date, lc, shifted)
        student_clocks.note(pid, win)
        if not clocks.note(pid, win):
            continue
        aff[pid].add((e.school_id, STUDENT))
        studies[pid].add(Study(e.school_id, e.grade, e.programme or None, e.programme_area or None))
        rank = (0 if e.main_school else 1, e.start_date, e.school_id)
        if pid not in primary or rank < primary[pid]:
            primary[pid] = rank
            grade[pid] = e.grade
    for m in snap.employments:
        pid = canon(m.person_id)
        if pid not in persons:
            continue
        if not clocks.note(pid, activity.window(m.role, m.start_date, m.end_date, lc, shifted)):
            continue
        aff[pid].add((m.school_id, m.role))
        rank = (2, m.start_date, m.school_id)  # an enrollment's school wins over an employment's
        if pid not in primary or rank < primary[pid]:
            primary[pid] = rank

    # Guardians are active while one of their students is; they follow those schools.
    students_of: dict[str, list[str]] = defaultdict(list)
    unsure: set[str] = set()  # guardians of a student whose record is broken this run
    all_students: dict[str, list[str]] = defaultdict(list)  # active or not: for the bridge
    for g in snap.guardianships:
        gid, sid = canon(g.guardian_id), canon(g.student_id)
        if gid in persons and sid not in persons and sid in frozen_p:
            unsure.add(gid)
        if gid not in persons or sid not in persons:
            bad = g.guardian_id if gid not in persons else g.student_id
            if canon(bad) not in frozen_p:
                errors.append(
                    DataError(
                        "unknown_person",
                        f"guardianship:{g.guardian_id}/{g.student_id}",
                        f"refers to unknown person {bad}; ignored",
                    )
                )
            continue
        all_students[gid].append(sid)
        if sid in aff and any(r == STUDENT for _, r in aff[sid]):
            students_of[gid].append(sid)
    for gid, studs in students_of.items():
        for sid in studs:
            for school, role in aff[sid]:
                if role == STUDENT:
                    aff[gid].add((school, GUARDIAN))
        if gid not in primary:
            primary[gid] = (3, "", min(s for s, r in aff[gid] if r == GUARDIAN))
    # A guardian whose only students cannot be judged is frozen too: a typo in a
    # student's record must not deprovision the parent.
    frozen_p.update(gid for gid in unsure if gid not in aff)
    # A guardian's clocks are their students' too: bridged while a student is bridged.
    for gid, studs in all_students.items():
        clocks.merge(gid, student_clocks, studs)
    bridged = clocks.bridged(aff, lc.bridge_days)
    ended = clocks.end_dates(aff)

    # Usernames: from the historic base, or newly allocated for persons new to it.
    requests = []
    for pid in aff:
        if pid not in ident.username_by_person:
            p = persons[pid]
            requests.append(
                usernames.UsernameRequest(
                    person_id=pid,
                    given=p.given_name or "",
                    middle=p.middle_name,
                    family=p.family_name or "",
                    birth_year=int(p.birth_date[:4]) if p.birth_date else None,
                    is_student=any(r == STUDENT for _, r in aff[pid]),
                )
            )
    new_usernames = (
        usernames.allocate(
            requests,
            ident.taken,
            usernames.parse_scheme(cfg.scheme),
            usernames.parse_scheme(cfg.student_scheme) if cfg.student_scheme else None,
            max_length=cfg.max_length,
            min_counter=cfg.min_counter,
        )
        if requests
        else {}
    )

    desired: dict[str, DesiredPerson] = {}
    for pid, pairs in aff.items():
        p = persons[pid]
        roles = tuple(sorted({r for _, r in pairs}, key=_ROLE_ORDER.__getitem__))
        desired[pid] = DesiredPerson(
            person_id=pid,
            username=ident.username_by_person.get(pid) or new_usernames[pid],
            nin=p.nin,
            given_name=p.given_name or "",
            middle_name=p.middle_name,
            family_name=p.family_name or "",
            display_name=names.display_name(p.given_name or "", p.middle_name, p.family_name or ""),
            birth_date=p.birth_date,
            email=p.email,
            mobile=p.mobile,
            roles=roles,
            affiliations=tuple(sorted(pairs)),
            primary_school=primary[pid][2],
            grade=grade.get(pid) if STUDENT in roles else None,
            students=tuple(sorted(students_of.get(pid, ()))),
            studies=tuple(sorted(studies[pid], key=_study_order)) if pid in studies else (),
        )

    groups, frozen_g = _derive_groups(snap, as_of, schools, desired, canon, frozen_p, broken.groups, errors)
    state = DesiredState(
        as_of=as_of,
        schools=schools,
        persons=desired,
        groups=groups,
        errors=tuple(errors),
        new_usernames=new_usernames,
    )
    inactive_nins = {
        pid: p.nin
        for pid, p in persons.items()
        if pid not in aff and p.nin and pid in ident.username_by_person and p.nin not in ident.person_by_nin
    }
    return Derivation(
        state, frozenset(frozen_p), frozenset(frozen_g), new_aliases, inactive_nins, bridged, ended
    )


def _study_order(s: Study) -> tuple[str, int, str, str]:
    """Sort key of a study: school, grade (unknown first), programme, programme area."""
    return (s.school_id, -1 if s.grade is None else s.grade, s.programme or "", s.programme_area or "")


def _derive_groups(
    snap: SourceSnapshot,
    as_of: str,
    schools: Mapping[str, School],
    desired: Mapping[str, DesiredPerson],
    canon: Callable[[str], str],
    frozen_p: set[str],
    frozen_g: set[str],
    errors: list[DataError],
) -> tuple[dict[str, DesiredGroup], set[str]]:
    """SIS groups active on as_of with their active members, plus the school-wide groups.

    Rows come checked (validate.check_rows: kinds, roles and periods are sound); ``frozen_g``
    holds what broken rows froze already.
    """
    groups: dict[str, DesiredGroup] = {}
    frozen: set[str] = set(frozen_g)
    sis = {}
    for g in snap.groups:
        ref = f"group:{g.group_id}"
        if g.school_id not in schools:
            errors.append(
                DataError("unknown_school", ref, f"refers to unknown school {g.school_id}; group frozen")
            )
            frozen.add(g.group_id)
            continue
        if g.kind == TEACHING and not (g.subject_code or "").strip():
            errors.append(
                DataError(
                    "missing_subject_code",
                    ref,
                    f"teaching group {g.name!r} has no subject code; group frozen",
                    g.school_id,
                )
            )
            frozen.add(g.group_id)
            continue
        if not names.clean(g.name):
            errors.append(DataError("missing_name", ref, "group has no name; group frozen", g.school_id))
            frozen.add(g.group_id)
            continue
        if _active(g.start_date, g.end_date, as_of):
            sis[g.group_id] = g
    known_groups = {g.group_id for g in snap.groups}
    known_persons = {p.person_id for p in snap.persons}
    members: dict[str, set[tuple[str, str]]] = defaultdict(set)
    # One (person, role) tuple for all the groups that hold it: a pupil is in several
    # groups, and a tuple per membership was a million of them at Oslo size.
    pairs: dict[tuple[str, str], tuple[str, str]] = {}
    for m in snap.memberships:
        gid, pid = m.group_id, canon(m.person_id)
        active = pid in desired
        judged = pid not in frozen_p and m.person_id not in frozen_p
        if not active and judged and m.person_id not in known_persons:
            # A broken membership row freezes its group (whether or not the group is active).
            errors.append(
                DataError(
                    "unknown_person",
                    f"membership:{gid}/{m.person_id}",
                    f"refers to unknown person {m.person_id}; group frozen",
                )
            )
            frozen.add(gid)
            continue
        if gid in frozen:
            continue
        if gid not in known_groups:
            errors.append(
                DataError(
                    "unknown_group",
                    f"membership:{gid}/{m.person_id}",
                    f"refers to unknown group {gid}; frozen",
                )
            )
            frozen.add(gid)
            continue
        if gid not in sis:
            continue  # not active on as_of
        if not active:
            if not judged:
                frozen.add(gid)  # a member we cannot judge: do not shrink the group
            continue
        pair = (pid, m.role)
        members[gid].add(pairs.setdefault(pair, pair))
    for gid, g in sis.items():
        if gid in frozen:
            continue
        groups[gid] = DesiredGroup(
            key=gid,
            school_id=g.school_id,
            kind=g.kind,
            name=names.clean(g.name),
            subject_code=(g.subject_code or "").strip() or None,
            grade=g.grade,
            start_date=g.start_date,
            end_date=g.end_date,
            members=tuple(sorted(members.get(gid, ()))),
        )
    # School-wide groups: every school gets all four, so they exist before anyone joins.
    by_school_role: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pid, p in desired.items():
        for school, role in p.affiliations:
            by_school_role[(school, role)].append(pid)
    for school in schools:
        for which, roles in SCHOOL_GROUP_ROLES.items():
            held = ((pid, r) for r in roles for pid in by_school_role.get((school, r), ()))
            mem = sorted({pairs.setdefault(pair, pair) for pair in held})
            key = school_group_key(school, which)
            groups[key] = DesiredGroup(
                key=key,
                school_id=school,
                kind=SCHOOL_WIDE,
                name=f"{schools[school].short_name} {which}",
                subject_code=None,
                grade=None,
                start_date=None,
                end_date=None,
                members=tuple(mem),
                school_role=which,
            )
    return groups, frozen
