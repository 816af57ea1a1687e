"""Benchmark: the Feide, AD and Microsoft 365 mappings and the Feide LDIF files (run by hand).

Builds a synthetic Oslo-size desired state (90,000 students, 15,000 staff, 150,000
guardians, 180 schools, 20,000 SIS groups plus the school-wide groups, about 1,000,000
SIS memberships), times ``map_state`` of each mapping, then times
``FeideLdifConnector`` on the Feide objects: a first run (every entry created: full
file, delta file of adds, latest-full.ldif) and a quiet run (full file only). Usage::

    .venv/bin/python benchmarks/bench_feide_ldif.py [--scale 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.base import StoredObject  # noqa: E402
from connectors.feide.ldif import FeideLdifConnector  # noqa: E402
from mappings import ad, feide, m365  # noqa: E402
from mappings.base import MappingContext  # noqa: E402
from provisioner.config import ADConfig, FeideConfig, M365Config, OwnerConfig  # noqa: E402
from provisioner.core.model import (  # noqa: E402
    BASIS,
    CONTACT,
    EMPLOYEE_ROLES,
    GUARDIAN,
    SCHOOL_GROUP_ROLES,
    SCHOOL_WIDE,
    STUDENT,
    TEACHER,
    TEACHING,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
    school_group_key,
)
from provisioner.core.plan import Change, Op  # noqa: E402
from provisioner.core.states import ObjectStatus  # noqa: E402

OWNER = OwnerConfig(
    name="Oslo kommune", org_number="958935420", realm="oslo.kommune.no", mail_domain="osloskolen.no"
)
GIVEN = ["Ola", "Kari", "Nora", "Jakob", "Émilie", "Øyvind", "Åse", "Muhammad", "Sofie", "Ida"]
FAMILY = ["Nordmann", "Hansen", "Johansen", "Ødegård", "Berg & Co", "O'Brien", "Haugen", "Lie"]
SUBJECTS = ["MAT0010", "NOR0214", "ENG0012", "NAT0010", "SAF0010", "KRLE0010", "KHV0010"]


def build(scale: float) -> DesiredState:
    """A synthetic desired state of the given scale (1.0 = Oslo)."""
    rnd = random.Random(42)
    n_students, n_staff, n_guardians = int(90_000 * scale), int(15_000 * scale), int(150_000 * scale)
    n_schools, n_groups = max(1, int(180 * scale)), int(20_000 * scale)
    schools = {
        f"S{s}": School(f"S{s}", f"{974000000 + s}", f"Skole nummer {s}", f"SK{s}", "primary")
        for s in range(n_schools)
    }
    sids = sorted(schools)
    persons: dict[str, DesiredPerson] = {}

    def add(pid: str, roles: tuple[str, ...], pairs: tuple[tuple[str, str], ...], **kw: object) -> None:
        given, family = rnd.choice(GIVEN), rnd.choice(FAMILY)
        persons[pid] = DesiredPerson(
            person_id=pid,
            username=f"u{pid.lower()}",
            nin=f"{rnd.randrange(10**10, 10**11)}" if rnd.random() < 0.97 else None,
            given_name=given,
            middle_name=None,
            family_name=family,
            display_name=f"{given} {family}",
            birth_date="2010-01-01",
            email=None,
            mobile=None,
            roles=roles,
            affiliations=tuple(sorted(pairs)),
            primary_school=pairs[0][0],
            grade=None,
            **kw,  # type: ignore[arg-type]
        )

    student_school: dict[str, str] = {}
    for i in range(n_students):
        school = sids[i % n_schools]
        student_school[f"P{i}"] = school
        add(f"P{i}", (STUDENT,), ((school, STUDENT),))
    teachers_at: dict[str, list[str]] = {s: [] for s in sids}
    for i in range(n_staff):
        pid = f"E{i}"
        school = sids[i % n_schools]
        role = EMPLOYEE_ROLES[0] if i % 10 < 8 else EMPLOYEE_ROLES[1 + i % 2]
        pairs = [(school, role)]
        if i % 25 == 0:  # some work at two schools
            pairs.append((sids[(i + 1) % n_schools], role))
        add(pid, (role,), tuple(pairs))
        if role == TEACHER:
            teachers_at[school].append(pid)
    students = sorted(student_school)
    for i in range(n_guardians):
        kid = students[i % len(students)]
        add(f"G{i}", (GUARDIAN,), ((student_school[kid], GUARDIAN),), students=(kid,))

    # SIS groups: per school a share of basis, teaching and contact groups; each student in
    # one basis and ~9 teaching/contact groups, each group with 1-2 teachers: ~1,000,000 rows.
    students_at: dict[str, list[str]] = {s: [] for s in sids}
    for pid, s in student_school.items():
        students_at[s].append(pid)
    groups: dict[str, DesiredGroup] = {}
    per_school = max(3, n_groups // n_schools)
    for s in sids:
        kids = students_at[s]
        n_basis = max(1, per_school // 6)
        for g in range(per_school):
            kind = BASIS if g < n_basis else (TEACHING if g % 5 else CONTACT)
            if kind == BASIS:
                members = {(p, STUDENT) for p in kids[g::n_basis]}
            else:
                size = min(len(kids), 52)
                start = rnd.randrange(max(1, len(kids)))
                members = {(kids[(start + j) % len(kids)], STUDENT) for j in range(size)} if kids else set()
            for t in rnd.sample(teachers_at[s], min(2, len(teachers_at[s]))):
                members.add((t, TEACHER))
            key = f"{s}/{kind[0].upper()}{g}"
            groups[key] = DesiredGroup(
                key=key,
                school_id=s,
                kind=kind,
                name=f"{'Matematikk' if kind == TEACHING else 'Klasse'} {g} å",
                subject_code=rnd.choice(SUBJECTS) if kind == TEACHING else None,
                grade=None,
                start_date="2025-08-01",
                end_date="2026-06-30",
                members=tuple(sorted(members)),
            )
    by_school_role: dict[tuple[str, str], list[str]] = {}
    for pid, p in persons.items():
        for s, r in p.affiliations:
            by_school_role.setdefault((s, r), []).append(pid)
    for s in sids:
        for which, roles in SCHOOL_GROUP_ROLES.items():
            key = school_group_key(s, which)
            mem = tuple(sorted((pid, r) for r in roles for pid in by_school_role.get((s, r), ())))
            groups[key] = DesiredGroup(
                key, s, SCHOOL_WIDE, f"SK {which}", None, None, None, None, mem, school_role=which
            )
    return DesiredState(as_of="2025-09-01", schools=schools, persons=persons, groups=groups)


def timed(label: str, fn):  # noqa: ANN001, ANN201
    """Run fn once, print how long it took, return its result."""
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<44} {time.perf_counter() - t0:7.2f} s")
    return out


def main() -> None:
    """Build, map, write; print timings."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    args = ap.parse_args()

    state = timed("build synthetic state", lambda: build(args.scale))
    sis_rows = sum(len(g.members) for g in state.groups.values() if g.kind != SCHOOL_WIDE)
    print(f"  {len(state.persons):,} persons, {len(state.groups):,} groups, {sis_rows:,} SIS memberships")
    fcfg = FeideConfig(base_dn="dc=oslo,dc=kommune,dc=no")
    fctx = MappingContext(OWNER, fcfg, state.as_of)
    objs = timed("feide.map_state", lambda: list(feide.map_state(state, fctx)))
    timed("ad.map_state", lambda: list(ad.map_state(state, MappingContext(OWNER, ADConfig(), state.as_of))))
    timed(
        "m365.map_state",
        lambda: list(m365.map_state(state, MappingContext(OWNER, M365Config(), state.as_of))),
    )
    people = [o for o in objs if o.kind == "person"]
    ents = sum(len(o.attrs["eduPersonEntitlement"]) for o in people)
    print(f"  feide: {len(people):,} persons, {ents / max(1, len(people)):.1f} entitlement values each")

    current = [
        StoredObject(o.kind, o.key, o.place["dn"], ObjectStatus.ACTIVE, o.record(), None, o.username)
        for o in objs
    ]
    changes = [Change("feide", Op.CREATE, o.kind, o.key, "bench", attrs=o.attrs, place=o.place) for o in objs]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        conn = FeideLdifConnector(fcfg, OWNER, out)

        def first_run() -> None:
            conn.begin("first", lambda kind, key: None)
            for c in changes:
                conn.accept(c)
            conn.export([])  # nothing stored yet: everything comes from the changes

        def quiet_run() -> None:
            conn.begin("quiet", lambda kind, key: None)
            conn.export(current)

        timed("LDIF first run (accept all + full + delta)", first_run)
        timed("LDIF quiet run (full file only)", quiet_run)
        for p in sorted(out.glob("*.ldif")):
            print(f"  {p.name}: {p.stat().st_size / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
