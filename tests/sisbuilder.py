"""Tiny school-admin databases and configs for pipeline tests.

``Sis`` holds the rows of the seven reference tables as model NamedTuples (the column
order of the reference schema); ``Sis.write(url)`` creates the schema if needed and
replaces every row, so a test can change the lists and write again between runs.
``make_config`` writes a config TOML with itslearning and Feide applying into temp
folders and AD and Microsoft 365 planning only. NINs are synthetic (month + 80).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from demo.data import TABLES, create_schema
from provisioner import config as config_mod
from provisioner.core import nin as nin_mod
from provisioner.core.model import (
    DesiredPerson,
    Employment,
    Group,
    GroupMembership,
    Guardianship,
    Person,
    School,
    SourceSnapshot,
    StudentEnrollment,
)

YEAR_START, YEAR_END = "2025-08-15", "2026-06-20"
OWNER_ORG = "964000000"

_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


# -- NINs ---------------------------------------------------------------------------------


def _check(digits: Sequence[int], weights: Sequence[int]) -> int | None:
    k = 11 - sum(w * d for w, d in zip(weights, digits)) % 11
    return 0 if k == 11 else None if k == 10 else k


def with_check_digits(base9: str) -> str | None:
    """Nine digits plus their two mod-11 check digits, or None when a check digit would be 10."""
    d = [int(c) for c in base9]
    k1 = _check(d, _W1)
    if k1 is None:
        return None
    k2 = _check(d + [k1], _W2)
    return None if k2 is None else base9 + str(k1) + str(k2)


_issued: set[str] = set()
_resume: dict[tuple[dt.date, bool], tuple[dt.date, int]] = {}  # next (day, individual) per start


def synthetic_nin(born: dt.date | str = "2012-03-04", *, dnumber_ok: bool = False) -> str:
    """A valid synthetic NIN not handed out before (the next day's when a date runs out).

    With ``dnumber_ok`` only one whose D-number twin has valid check digits too.
    """
    start = dt.date.fromisoformat(born) if isinstance(born, str) else born
    # Resume where the last call for this date stopped: starting over made a test that
    # asks for thousands of numbers quadratic.
    day, first = _resume.get((start, dnumber_ok), (start, None))
    while True:
        for i in nin_mod.individual_range(day.year):
            if first is not None and i < first:
                continue
            n = nin_mod.make_synthetic(day, i)
            if n is not None and n not in _issued and (not dnumber_ok or dnumber(n) is not None):
                _issued.add(n)
                _resume[(start, dnumber_ok)] = (day, i + 1)
                return n
        day, first = day + dt.timedelta(days=1), None


def dnumber(fnr: str) -> str | None:
    """The D-number twin of a valid NIN: first digit + 4, check digits recomputed (None if none exist)."""
    return with_check_digits(str(int(fnr[0]) + 4) + fnr[1:9])


def nin_pair(born: dt.date | str = "2012-03-04") -> tuple[str, str]:
    """(D-number, fødselsnummer) for one synthetic person."""
    fnr = synthetic_nin(born, dnumber_ok=True)
    d = dnumber(fnr)
    assert d is not None and nin_mod.is_valid(d) and nin_mod.kind(d) == "dnr"
    return d, fnr


def bad_check_digit(valid: str) -> str:
    """The NIN with its last check digit changed (fails validation)."""
    return valid[:10] + str((int(valid[10]) + 1) % 10)


# -- the SIS --------------------------------------------------------------------------------


@dataclass
class Sis:
    """Rows of a tiny school-admin database."""

    schools: list[School] = field(default_factory=list)
    persons: list[Person] = field(default_factory=list)
    enrollments: list[StudentEnrollment] = field(default_factory=list)
    employments: list[Employment] = field(default_factory=list)
    guardianships: list[Guardianship] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    memberships: list[GroupMembership] = field(default_factory=list)

    # table name in the reference schema -> attribute here
    TABLE_ATTR = {
        "school": "schools",
        "person": "persons",
        "student_enrollment": "enrollments",
        "employment": "employments",
        "guardianship": "guardianships",
        "school_group": "groups",
        "group_membership": "memberships",
    }

    def snapshot(self) -> SourceSnapshot:
        """The rows as a SourceSnapshot, as read_snapshot would give them."""
        return SourceSnapshot(**{attr: tuple(getattr(self, attr)) for attr in self.TABLE_ATTR.values()})

    def copy(self) -> Sis:
        """A deep copy to change without touching this one."""
        return copy.deepcopy(self)

    # -- building ----------------------------------------------------------------------
    def school(self, school_id: str, org_number: str, short: str | None = None) -> Sis:
        """Add a school."""
        self.schools.append(
            School(school_id, org_number, f"{school_id.title()} skole", short or school_id, "combined")
        )
        return self

    def person(
        self,
        pid: str,
        given: str | None = "Ola",
        family: str | None = "Nordmann",
        *,
        nin: str | None = None,
        middle: str | None = None,
        born: str | None = "2012-03-04",
        email: str | None = None,
    ) -> Sis:
        """Add a person."""
        self.persons.append(Person(pid, nin, given, middle, family, born, email, None))
        return self

    def student(
        self,
        pid: str,
        school_id: str,
        given: str = "Ola",
        family: str = "Nordmann",
        *,
        nin: str | None = "auto",
        grade: int | None = 6,
        start: str = YEAR_START,
        end: str | None = None,
        **kw: Any,
    ) -> Sis:
        """Add a person with one enrollment (a synthetic NIN unless given)."""
        n = synthetic_nin(kw.get("born") or "2012-03-04") if nin == "auto" else nin
        self.person(pid, given, family, nin=n, **kw)
        self.enroll(pid, school_id, grade=grade, start=start, end=end)
        return self

    def enroll(
        self,
        pid: str,
        school_id: str,
        *,
        grade: int | None = 6,
        start: str = YEAR_START,
        end: str | None = None,
        main: bool = True,
        eid: str | None = None,
    ) -> Sis:
        """Add an enrollment."""
        eid = eid or f"E-{pid}-{school_id}-{len(self.enrollments)}"
        self.enrollments.append(StudentEnrollment(eid, pid, school_id, grade, start, end, main))
        return self

    def employee(
        self,
        pid: str,
        school_id: str,
        given: str = "Kari",
        family: str = "Lærer",
        *,
        role: str = "teacher",
        nin: str | None = "auto",
        start: str = "2020-08-01",
        end: str | None = None,
        **kw: Any,
    ) -> Sis:
        """Add a person with one employment."""
        n = synthetic_nin(kw.get("born") or "1980-05-06") if nin == "auto" else nin
        kw.setdefault("born", "1980-05-06")
        self.person(pid, given, family, nin=n, **kw)
        self.employ(pid, school_id, role=role, start=start, end=end)
        return self

    def employ(
        self,
        pid: str,
        school_id: str,
        *,
        role: str = "teacher",
        start: str = "2020-08-01",
        end: str | None = None,
    ) -> Sis:
        """Add an employment."""
        self.employments.append(
            Employment(f"A-{pid}-{school_id}-{len(self.employments)}", pid, school_id, role, start, end)
        )
        return self

    def guardian(
        self, pid: str, student_ids: Iterable[str], given: str = "Per", family: str = "Forelder", **kw: Any
    ) -> Sis:
        """Add a guardian (no NIN by default) of the given students."""
        kw.setdefault("born", "1982-01-02")
        kw.setdefault("email", f"{pid.lower()}@privat.example.org")
        self.person(pid, given, family, **kw)
        for s in student_ids:
            self.guardianships.append(Guardianship(pid, s))
        return self

    def link_guardian(self, guardian_id: str, student_id: str) -> Sis:
        """Add a guardianship between two existing persons."""
        self.guardianships.append(Guardianship(guardian_id, student_id))
        return self

    def group(
        self,
        gid: str,
        school_id: str,
        kind: str = "basis",
        name: str | None = None,
        *,
        subject: str | None = None,
        grade: int | None = 6,
        start: str = YEAR_START,
        end: str = YEAR_END,
        members: Iterable[tuple[str, str]] = (),
    ) -> Sis:
        """Add a group and its memberships ((person_id, student|teacher) pairs)."""
        self.groups.append(Group(gid, school_id, kind, name or gid, subject, grade, start, end))
        for pid, role in members:
            self.memberships.append(GroupMembership(gid, pid, role))
        return self

    # -- changing ------------------------------------------------------------------------
    def end_enrollments(self, pid: str, end: str) -> Sis:
        """Set the end date of every open enrollment of a person."""
        self.enrollments = [
            e._replace(end_date=end) if e.person_id == pid and (e.end_date is None or e.end_date > end) else e
            for e in self.enrollments
        ]
        return self

    def update_person(self, pid: str, **changes: Any) -> Sis:
        """Change fields of a person (Person field names)."""
        self.persons = [p._replace(**changes) if p.person_id == pid else p for p in self.persons]
        return self

    def remove_person(self, pid: str) -> Sis:
        """Remove a person and every row that refers to them."""
        self.persons = [p for p in self.persons if p.person_id != pid]
        self.enrollments = [e for e in self.enrollments if e.person_id != pid]
        self.employments = [e for e in self.employments if e.person_id != pid]
        self.guardianships = [g for g in self.guardianships if pid not in (g.guardian_id, g.student_id)]
        self.memberships = [m for m in self.memberships if m.person_id != pid]
        return self

    def get_person(self, pid: str) -> Person:
        """One person row."""
        return next(p for p in self.persons if p.person_id == pid)

    # -- writing -----------------------------------------------------------------------
    def write(self, url: str) -> None:
        """Create the reference schema if missing and replace every row with this data."""
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            if not sa.inspect(engine).has_table("school"):
                create_schema(engine)
            with engine.begin() as conn:
                for table in reversed(list(TABLES)):
                    conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)
                for table, cols in TABLES.items():
                    rows = [tuple(r) for r in getattr(self, self.TABLE_ATTR[table])]
                    if not rows:
                        continue
                    stmt = sa.text(
                        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
                    )
                    conn.execute(stmt, [dict(zip(cols, r)) for r in rows])
        finally:
            engine.dispose()


def small_sis() -> Sis:
    """Two schools, a class each, six students, two teachers, a staff member, three guardians."""
    s = Sis()
    s.school("NORD", "974000001", "NORDBY").school("SOR", "974000002", "SORBY")
    s.student("S1", "NORD", "Ola", "Nordmann")
    s.student("S2", "NORD", "Kari", "Hansen")
    s.student("S3", "NORD", "Per", "Olsen")
    s.student("S4", "SOR", "Åse", "Ødegård")
    s.student("S5", "SOR", "Nils", "Berg")
    s.student("S6", "SOR", "Ingrid", "Dahl")
    s.employee("T1", "NORD", "Kari", "Lærer")
    s.employee("T2", "SOR", "Jon", "Lektor")
    s.employee("A1", "NORD", "Liv", "Kontor", role="staff")
    s.guardian("G1", ["S1", "S2"], "Per", "Forelder")
    s.guardian("G2", ["S4"], "Anne", "Mor")
    s.guardian("G3", ["S6"], "Ali", "Far")
    s.group(
        "NORD-6A", "NORD", "basis", "6A", members=[("S1", "student"), ("S2", "student"), ("T1", "teacher")]
    )
    s.group("SOR-6A", "SOR", "basis", "6A", members=[("S4", "student"), ("S5", "student"), ("T2", "teacher")])
    s.group(
        "NORD-MAT",
        "NORD",
        "teaching",
        "MAT 6A",
        subject="MAT0006",
        members=[("S1", "student"), ("S3", "student"), ("T1", "teacher")],
    )
    return s


# -- config ---------------------------------------------------------------------------------


def config_toml(
    tmp: Path,
    source_url: str,
    state_url: str,
    *,
    targets: Sequence[str] = ("itslearning", "feide", "ad", "m365"),
    safety: dict[str, Any] | None = None,
    target_settings: dict[str, dict[str, Any]] | None = None,
    retention_days: int = 180,
) -> str:
    """Config text: itslearning and Feide apply into ``tmp``, AD and Microsoft 365 only plan."""
    safe = {
        "max_deletes": 500,
        "max_delete_percent": 100.0,
        "max_member_removal_percent": 100.0,  # a tiny SIS: one leaver is many % of its memberships
        "max_source_drop_percent": 20.0,
        **(safety or {}),
    }
    defaults: dict[str, dict[str, Any]] = {
        "itslearning": {"mode": "apply", "output_dir": str(tmp / "itslearning")},
        "feide": {"mode": "apply", "output_dir": str(tmp / "feide"), "base_dn": "dc=eksempel,dc=no"},
        "ad": {"mode": "plan", "base_dn": "OU=Skoler,DC=eksempel,DC=local"},
        "m365": {"mode": "plan"},
    }
    lines = [
        "[owner]",
        'name = "Eksempel kommune"',
        f'org_number = "{OWNER_ORG}"',
        'realm = "eksempel.kommune.no"',
        'mail_domain = "skole.eksempel.no"',
        "",
        "[source]",
        f"url = {_toml(source_url)}",
        "",
        "[state]",
        f"url = {_toml(state_url)}",
        "",
        "[safety]",
        *(f"{k} = {_toml(v)}" for k, v in safe.items()),
        "",
        "[lifecycle]",
        f"retention_days = {retention_days}",
    ]
    for name in targets:
        settings = {**defaults[name], **((target_settings or {}).get(name, {}))}
        lines += ["", f"[targets.{name}]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    return "\n".join(lines) + "\n"


def make_config(tmp: Path, source_url: str, state_url: str, **kw: Any) -> config_mod.Config:
    """Write the config TOML into ``tmp`` and parse it."""
    tmp.mkdir(parents=True, exist_ok=True)
    text = config_toml(tmp, source_url, state_url, **kw)
    path = tmp / "bas.toml"
    path.write_text(text, encoding="utf-8")
    return config_mod.load(path)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def desired_student(pid: str, username: str = "us1") -> DesiredPerson:
    """A derived active student at NORD, for tests that build plans by hand."""
    return DesiredPerson(
        pid,
        username,
        None,
        "Ola",
        None,
        "N",
        "Ola N",
        None,
        None,
        None,
        ("student",),
        (("NORD", "student"),),
        "NORD",
        None,
    )


# -- the NIN seal key -------------------------------------------------------------------------

TEST_SEAL_KEY = "5e" * 32


def same_seal_key(state_url: str) -> None:
    """Give a state store the tests' NIN seal key before its first run.

    Each store makes its own key at random (provisioner.state.nins), so two stores plan the
    same NIN with different seals: a test that compares plans made in two stores gives
    both this key.
    """
    from provisioner.state.nins import KEY
    from provisioner.state.store import StateStore

    store = StateStore(state_url)
    try:
        store.meta.set(KEY, TEST_SEAL_KEY)
    finally:
        store.close()
