"""The SIS changes the pipeline benchmarks make (benchmarks/bench_pipeline.py, bench_realtime.py).

Each opens the reference-schema SQLite SIS the benchmark generated, makes one kind of
change a school-admin system makes, and commits it: a renamed person, a class move, a
new pupil, a pupil who leaves, many renamed persons, 1 % churn. The samples are fixed
(an ``n``-th pupil, a seeded random sample), so two benchmark runs change the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

from provisioner.core import nin as nin_mod


def churn(db: Path, as_of: dt.date, seed: int = 7, tag: str = "NEW") -> dict[str, int]:
    """Change about 1 % of the owner: leavers, joiners, renames, moved memberships (the
    joiners' ids start with ``tag``: another churn needs another)."""
    rng = random.Random(seed)
    con = sqlite3.connect(db)
    # Pupils at school today: one whose enrollment only starts later cannot have left yesterday
    # (ending it then would be a data error, an end before the start, not a leaver).
    students = [
        r[0]
        for r in con.execute(
            "SELECT person_id FROM student_enrollment WHERE end_date IS NULL AND start_date <= ?",
            (as_of.isoformat(),),
        )
    ]
    persons = [r[0] for r in con.execute("SELECT person_id FROM person")]
    yesterday = (as_of - dt.timedelta(days=1)).isoformat()
    leavers = rng.sample(students, len(students) // 100)
    con.executemany(
        "UPDATE student_enrollment SET end_date = ?"
        " WHERE person_id = ? AND end_date IS NULL AND start_date <= ?",
        [(yesterday, p, as_of.isoformat()) for p in leavers],
    )
    renamed = rng.sample(persons, len(persons) // 100)
    con.executemany(
        "UPDATE person SET family_name = family_name || '-Hansen' WHERE person_id = ?",
        [(p,) for p in renamed],
    )
    schools = [r[0] for r in con.execute("SELECT school_id FROM school")]
    joiners = []
    for i in range(len(leavers)):
        pid = f"{tag}{i:07d}"
        joiners.append(pid)
        con.execute(
            "INSERT INTO person (person_id, nin, given_name, family_name) VALUES (?, NULL, ?, ?)",
            (pid, rng.choice(["Ola", "Kari", "Nora", "Jakob"]), rng.choice(["Nordmann", "Berg", "Dahl"])),
        )
        con.execute(
            "INSERT INTO student_enrollment"
            " (enrollment_id, person_id, school_id, grade, start_date, end_date, main_school)"
            " VALUES (?, ?, ?, 5, ?, NULL, 1)",
            (f"E{tag}{i:07d}", pid, rng.choice(schools), (as_of - dt.timedelta(days=2)).isoformat()),
        )
    groups = [r[0] for r in con.execute("SELECT group_id FROM school_group WHERE kind = 'basis'")]
    con.executemany(
        "INSERT OR IGNORE INTO group_membership VALUES (?, ?, 'student')",
        [(rng.choice(groups), p) for p in joiners],
    )
    total = con.execute("SELECT count(*) FROM group_membership").fetchone()[0]
    moved = con.execute(
        "SELECT group_id, person_id, role FROM group_membership ORDER BY random() LIMIT ?",
        (total // 100,),  # 1 %: more would be refused by the source gate (a table fell by > 20 %)
    ).fetchall()
    con.executemany("DELETE FROM group_membership WHERE group_id = ? AND person_id = ? AND role = ?", moved)
    con.commit()
    con.close()
    return {
        "leavers": len(leavers),
        "joiners": len(joiners),
        "renamed": len(renamed),
        "memberships_removed": len(moved),
    }


def one_person(db: Path) -> str:
    """Rename one person in the SIS (the smallest change a run can see); their id."""
    con = sqlite3.connect(db)
    pid = con.execute("SELECT person_id FROM person ORDER BY person_id LIMIT 1 OFFSET 1000").fetchone()[0]
    con.execute("UPDATE person SET given_name = given_name || 'a' WHERE person_id = ?", (pid,))
    con.commit()
    con.close()
    return pid


RENAMED = 100  # persons renamed at once in the many-renamed row (each sample adds as many)


def renamed(db: Path, n: int, k: int) -> str:
    """Rename ``n`` persons (the ``k``-th random sample) in the SIS; what was done."""
    con = sqlite3.connect(db)
    persons = [r[0] for r in con.execute("SELECT person_id FROM person ORDER BY person_id")]
    chosen = random.Random(1_000 + k).sample(persons, n)
    con.executemany(
        "UPDATE person SET family_name = family_name || '-Berg' WHERE person_id = ?", [(p,) for p in chosen]
    )
    con.commit()
    con.close()
    return f"{n} renamed persons"


def class_move(db: Path, n: int) -> str:
    """Move the ``n``-th pupil (of a fixed sample) from their basis group to another of the
    school's: two groups' membership rows change, nothing else; the pupil's id."""
    con = sqlite3.connect(db)
    pupils = (
        "FROM group_membership m JOIN school_group g ON g.group_id = m.group_id"
        " WHERE g.kind = 'basis' AND m.role = 'student'"
    )
    pid, gid, school = con.execute(
        f"SELECT m.person_id, m.group_id, g.school_id {pupils} ORDER BY m.person_id LIMIT 1 OFFSET ?",  # noqa: S608
        ((2_000 + 41 * n) % _count(con, pupils.removeprefix("FROM ")),),  # (a demo-size SIS has fewer)
    ).fetchone()
    other = con.execute(
        "SELECT group_id FROM school_group WHERE school_id = ? AND kind = 'basis' AND group_id != ?"
        " ORDER BY group_id LIMIT 1",
        (school, gid),
    ).fetchone()[0]
    con.execute(
        "UPDATE group_membership SET group_id = ? WHERE group_id = ? AND person_id = ?", (other, gid, pid)
    )
    con.commit()
    con.close()
    return pid


def leaver(db: Path, as_of: dt.date, n: int) -> str:
    """The ``n``-th pupil of a fixed sample leaves (``leave``); their id."""
    pid = pick_leaver(db, n)
    leave(db, pid, as_of)
    return pid


def pick_leaver(db: Path, n: int) -> str:
    """The ``n``-th of a fixed sample of pupils with an enrollment that has not ended."""
    con = sqlite3.connect(db)
    try:
        active = "student_enrollment WHERE end_date IS NULL"
        return con.execute(
            f"SELECT person_id FROM {active} ORDER BY person_id LIMIT 1 OFFSET ?",  # noqa: S608 (fixed text)
            ((3_000 + 53 * n) % _count(con, active),),
        ).fetchone()[0]
    finally:
        con.close()


def leave(db: Path, pid: str, as_of: dt.date) -> None:
    """A pupil leaves: their enrollments end yesterday, in one transaction; nothing else
    changes (their memberships stay, as a SIS leaves them)."""
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute(
                "UPDATE student_enrollment SET end_date = ? WHERE person_id = ? AND end_date IS NULL",
                ((as_of - dt.timedelta(days=1)).isoformat(), pid),
            )
    finally:
        con.close()


def _count(con: sqlite3.Connection, rows: str) -> int:
    return con.execute(f"SELECT count(*) FROM {rows}").fetchone()[0]  # noqa: S608 (fixed text)


def new_nin(con: sqlite3.Connection, born: dt.date) -> str:
    """A valid NIN for a new pupil that no one in the SIS has."""
    head = born.strftime("%d%m%y")
    for individual in range(500, 1000):  # 500-999: born 2000-2039
        for checks in range(100):
            candidate = f"{head}{individual:03d}{checks:02d}"
            if (
                nin_mod.is_valid(candidate)
                and not con.execute("SELECT 1 FROM person WHERE nin = ?", (candidate,)).fetchone()
            ):
                return candidate
    raise SystemExit("no free NIN for the new pupil")


def new_pupil(db: Path, as_of: dt.date, n: int) -> str:
    """The ``n``-th new pupil, in a basis group of a fixed sample (commit_pupil); their id."""
    con = sqlite3.connect(db)
    try:
        school, group = con.execute(
            "SELECT school_id, group_id FROM school_group WHERE kind = 'basis' ORDER BY group_id"
            " LIMIT 1 OFFSET ?",
            ((100 + 37 * n) % _count(con, "school_group WHERE kind = 'basis'"),),
        ).fetchone()
    finally:
        con.close()
    pid = f"JOIN{n:05d}"
    commit_pupil(db, pid, (school, group), as_of, ("Nora", "Nykommer"))
    return pid


def commit_pupil(db: Path, pid: str, where: tuple[str, str], as_of: dt.date, name: tuple[str, str]) -> None:
    """Commit one new pupil (person with a NIN no one has, enrollment at ``where``'s school,
    membership of its basis group) in one transaction, as a SIS commits one: persons come,
    nothing else changes."""
    school, group = where
    con = sqlite3.connect(db)
    try:
        nin = new_nin(con, dt.date(as_of.year - 10, 3, 14))
        with con:
            con.execute(
                "INSERT INTO person (person_id, nin, given_name, family_name) VALUES (?, ?, ?, ?)",
                (pid, nin, *name),
            )
            con.execute(
                "INSERT INTO student_enrollment"
                " (enrollment_id, person_id, school_id, grade, start_date, end_date, main_school)"
                " VALUES (?, ?, ?, 5, ?, NULL, 1)",
                (f"E{pid}", pid, school, (as_of - dt.timedelta(days=2)).isoformat()),
            )
            con.execute("INSERT INTO group_membership VALUES (?, ?, 'student')", (group, pid))
    finally:
        con.close()
