"""Benchmark: write an Oslo-size itslearning full file (not a test; run by hand).

Builds a synthetic target state of 255,000 persons (90,000 students, 15,000 staff,
150,000 guardians linked to students), 20,000 groups and about 1,300,000 memberships,
then times ``ItslearningConnector.export`` writing the full file (and latest-full.xml)
from that stored state into a temp directory (with ``--first-run``: from no stored state
and the changes that create everything, as the very first run does, so also a delta).
Usage::

    .venv/bin/python benchmarks/bench_ims_xml.py [--scale 1.0] [--first-run] [--keep DIR]
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
from connectors.itslearning.connector import ItslearningConnector  # noqa: E402
from provisioner.config import ItslearningConfig, OwnerConfig  # noqa: E402
from provisioner.core.plan import Change, Op  # noqa: E402
from provisioner.core.states import ObjectStatus  # noqa: E402

GIVEN = ["Ola", "Kari", "Nora", "Jakob", "Émilie", "Øyvind", "Åse", "Muhammad", "Sofie", "Ida"]
FAMILY = ["Nordmann", "Hansen", "Johansen", "Ødegård", "Berg & Co", "O'Brien", "Haugen", "Lie"]


def build(scale: float) -> list[StoredObject]:
    """A synthetic state of the given scale (1.0 = Oslo)."""
    rnd = random.Random(42)
    n_students, n_staff, n_guardians = int(90_000 * scale), int(15_000 * scale), int(150_000 * scale)
    n_schools, n_groups, n_members = max(1, int(180 * scale)), int(20_000 * scale), int(1_300_000 * scale)
    objs: list[StoredObject] = [
        StoredObject(
            "org",
            "org",
            "org:958935420",
            ObjectStatus.ACTIVE,
            {
                "sourcedid": "org:958935420",
                "name": "Oslo kommune",
                "org_number": "958935420",
                "grouptype": "Skoleeier",
            },
            None,
            None,
        )
    ]
    for s in range(n_schools):
        sid = f"school:S{s}"
        attrs = {
            "sourcedid": sid,
            "name": f"Skole {s}",
            "short": f"S{s}",
            "org_number": "974778874",
            "grouptype": "Skole",
        }
        objs.append(StoredObject("orgunit", f"S{s}", sid, ObjectStatus.ACTIVE, attrs, None, None))
    students = [f"P{i:07d}" for i in range(n_students)]
    staff = [f"P{i:07d}" for i in range(n_students, n_students + n_staff)]

    def person(pid: str, role: str, extra: dict | None = None) -> StoredObject:
        g, f = rnd.choice(GIVEN), rnd.choice(FAMILY)
        user = f"{pid.lower()}"
        attrs = {
            "sourcedid": pid,
            "userid": user,
            "given": g,
            "family": f,
            "fn": f"{g} {f}",
            "email": f"{user}@osloskolen.no",
            "institutionrole": role,
            **(extra or {}),
        }
        return StoredObject("person", pid, pid, ObjectStatus.ACTIVE, attrs, None, user)

    objs += [person(p, "Student") for p in students]
    objs += [person(p, "Staff") for p in staff]
    for i in range(n_guardians):
        pid = f"G{i:07d}"
        kids = sorted(rnd.sample(students, 1 + (i % 2)))
        objs.append(person(pid, "Guest", {"students": kids, "email": None}))
    per_group = n_members // max(1, n_groups)
    for gi in range(n_groups):
        school = f"S{gi % n_schools}"
        mem = {(p, "01") for p in rnd.sample(students, per_group - 2)} | {
            (p, "02") for p in rnd.sample(staff, 2)
        }
        attrs = {
            "sourcedid": f"G{gi}",
            "name": f"{gi % 10}A Norsk",
            "school": school,
            "grouptype": "Undervisningsgruppe",
            "subject_code": "NOR0214",
            "start": "2025-08-18",
            "end": "2026-06-19",
        }
        objs.append(
            StoredObject("group", f"G{gi}", f"G{gi}", ObjectStatus.ACTIVE, attrs, tuple(sorted(mem)), None)
        )
    return objs


def main() -> None:
    """Build the state, write it, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, help="write into this directory and keep the files")
    ap.add_argument("--first-run", action="store_true", help="also a delta that creates everything")
    args = ap.parse_args()
    t0 = time.perf_counter()
    objs = build(args.scale)
    members = sum(len(o.members or ()) for o in objs)
    persons = sum(o.kind == "person" for o in objs)
    groups = sum(o.kind == "group" for o in objs)
    print(
        f"state: {persons:,} persons, {groups:,} groups, {members:,} memberships "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        conn = ItslearningConnector(
            ItslearningConfig(),
            OwnerConfig(
                name="Oslo kommune",
                org_number="958935420",
                realm="oslo.kommune.no",
                mail_domain="osloskolen.no",
            ),
            out,
        )
        conn.begin("bench", lambda kind, key: None)
        stored = objs
        if args.first_run:
            stored = []
            for o in objs:
                conn.accept(Change("itslearning", Op.CREATE, o.kind, o.key, "bench", attrs=o.attrs))
                if o.members:
                    conn.accept(
                        Change("itslearning", Op.ADD_MEMBERS, o.kind, o.key, "bench", members=o.members)
                    )
        t1 = time.perf_counter()
        conn.export(stored)
        elapsed = time.perf_counter() - t1
        conn.close()
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in conn.written)
        print(f"export() wrote {sizes} in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
