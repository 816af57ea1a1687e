"""A deterministic, realistic school-admin database in the reference schema.

Owns the demo/benchmark source data: ``create_schema`` (runs the packaged copy of
``reference-sis/schema.sql``), the ``Scale`` presets (``DEMO`` for ``bas demo``, ``OSLO``
for the benchmark) and ``generate``, which fills an empty database with schools,
persons (synthetic NINs only), enrollments, employments, guardianships, groups with
real LK20 Grep subject codes, and memberships. The same seed and ``as_of`` give the
same rows. Name lists live in ``demo.names``.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

import sqlalchemy as sa

from demo import names as nm
from provisioner.core.names import fold
from provisioner.core.nin import individual_range, make_synthetic

__all__ = ["DEMO", "OSLO", "TABLES", "Scale", "create_schema", "generate", "schema_statements"]

# Insert order: parents before children, so PostgreSQL's foreign keys hold throughout.
TABLES: dict[str, tuple[str, ...]] = {
    "school": ("school_id", "org_number", "name", "short_name", "level"),
    "person": (
        "person_id", "nin", "given_name", "middle_name", "family_name", "birth_date", "email", "mobile",
    ),
    "student_enrollment": (
        "enrollment_id", "person_id", "school_id", "grade", "start_date", "end_date", "main_school",
        "programme", "programme_area",
    ),
    "employment": ("employment_id", "person_id", "school_id", "role", "start_date", "end_date"),
    "guardianship": ("guardian_id", "student_id"),
    "school_group": (
        "group_id", "school_id", "kind", "name", "subject_code", "grade", "start_date", "end_date",
    ),
    "group_membership": ("group_id", "person_id", "role"),
}  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """How big a school owner to generate: schools per level and target row numbers."""

    primary: int
    lower_secondary: int
    combined: int
    upper_secondary: int
    adult: int
    students: int
    employees: int  # distinct persons: teachers, staff and leaders
    guardians: int
    groups: int  # target, all kinds
    memberships: int  # target, students and teachers

    @property
    def schools(self) -> int:
        """Number of schools, all levels."""
        return self.primary + self.lower_secondary + self.combined + self.upper_secondary + self.adult


DEMO = Scale(2, 2, 2, 2, 2, students=1_200, employees=150, guardians=1_800, groups=660, memberships=12_700)
# Oslo kommune: about 180 schools (barne-, ungdoms-, 1-10-skoler, VGS, voksenopplæring).
OSLO = Scale(
    primary=95,
    lower_secondary=25,
    combined=30,
    upper_secondary=26,
    adult=4,
    students=90_000,
    employees=15_000,
    guardians=150_000,
    groups=20_000,
    memberships=1_000_000,
)

LEVELS = ("primary", "lower_secondary", "combined", "upper_secondary", "adult")
_GRADES: dict[str, tuple[int | None, ...]] = {
    "primary": tuple(range(1, 8)),
    "lower_secondary": (8, 9, 10),
    "combined": tuple(range(1, 11)),
    "upper_secondary": (11, 12, 13),
    "adult": (None,),
}
_FIRST_GRADE = {"primary": 1, "lower_secondary": 8, "combined": 1, "upper_secondary": 11}
# Relative size of one year cohort: ungdomsskoler and VGS draw from several barneskoler.
_COHORT_WEIGHT = {"primary": 1, "lower_secondary": 1.6, "combined": 0.9, "upper_secondary": 3.5, "adult": 3}
_CLASS_SIZE = {"primary": 25, "lower_secondary": 27, "combined": 25, "upper_secondary": 28, "adult": 18}

_ALT_GROUP_MAX = 32  # a chosen subject (1T, Fysikk 1) is taught in groups of at most this
_TEACHER_PER = 30  # one teacher per this many students in a group


@dataclass
class _Cohort:
    """One year group at one school (VGS: per programme) and its classes."""

    school_id: str
    short: str
    grade: int | None
    prefix: str  # class-name prefix: "6", "1ST", "VO"
    letters: list[str]
    members: list[list[str]]  # per class: students who belong in its groups
    slots: tuple[tuple[str, ...], ...]
    vgs: bool


def schema_statements() -> list[str]:
    """The reference schema's statements, comments removed, in file order."""
    text = resources.files("demo").joinpath("reference_schema.sql").read_text(encoding="utf-8")
    # The schema has no string literals, so "--" always starts a comment.
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return [s.strip() for s in body.split(";") if s.strip()]


def create_schema(engine: sa.Engine) -> None:
    """Create the reference school-admin tables (SQLite, PostgreSQL, MariaDB)."""
    with engine.begin() as conn:
        for stmt in schema_statements():
            conn.exec_driver_sql(stmt)


def school_year(as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The school year (15 Aug - 20 Jun) that has most recently started on ``as_of``."""
    y = as_of.year if as_of >= dt.date(as_of.year, 8, 15) else as_of.year - 1
    return dt.date(y, 8, 15), dt.date(y + 1, 6, 20)


def _split(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to weights, largest remainder, so the parts sum exactly."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


class _Builder:
    """Builds every table's rows as tuples; one instance per generate() call."""

    def __init__(self, scale: Scale, seed: int, as_of: dt.date) -> None:
        self.scale = scale
        self.rng = random.Random(f"bas-demo:{seed}:{as_of.isoformat()}")
        self.as_of = as_of
        self.year_start, self.year_end = school_year(as_of)
        self.y = self.year_start.year
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        self.nins: set[str] = set()
        self.emails: dict[str, int] = {}
        self.schools: list[tuple[str, str, str]] = []  # (school_id, short, level)
        self.pools: dict[str, list[str]] = {}  # school_id -> active teachers
        self.cursor: dict[str, int] = {}
        self.employees: list[tuple[str, int]] = []  # (person_id, birth year)
        self.cohorts: list[_Cohort] = []
        self.programmes: dict[str, list[str]] = {}  # VGS school_id -> programme codes

    # -- persons -------------------------------------------------------------------

    def _born(self, year: int) -> dt.date:
        return dt.date(year, 1, 1) + dt.timedelta(days=self.rng.randrange(365))

    def _nin(self, born: dt.date) -> str:
        rng = self.rng
        r = individual_range(born.year)
        for _ in range(60):
            nin = make_synthetic(born, rng.randrange(r.start, r.stop))
            if nin is not None and nin not in self.nins:
                self.nins.add(nin)
                return nin
        for ind in r:  # a crowded birth date: take the first free number
            nin = make_synthetic(born, ind)
            if nin is not None and nin not in self.nins:
                self.nins.add(nin)
                return nin
        raise RuntimeError(f"no synthetic NIN left for {born}")

    def _person(
        self,
        given: str,
        middle: str | None,
        family: str,
        born: dt.date,
        *,
        with_nin: bool = True,
        email: str | None = None,
        mobile: str | None = None,
    ) -> str:
        rows = self.rows["person"]
        pid = f"P{len(rows) + 1:07d}"
        nin = self._nin(born) if with_nin else None
        rows.append((pid, nin, given, middle, family, born.isoformat(), email, mobile))
        return pid

    def _adult_name(self, origin: str, female: bool) -> tuple[str, str | None, str]:
        rng = self.rng
        family = nm.gendered_family(nm.family_name(rng, origin), female)
        return nm.given_name(rng, origin, female), nm.middle_name(rng, origin), family

    # -- schools and employees -----------------------------------------------------

    def build_schools(self) -> None:
        """Schools with place names, acronyms and org numbers."""
        rng = self.rng
        counts = [getattr(self.scale, lv) for lv in LEVELS]
        places = nm.place_names(rng, sum(counts))
        orgs: set[str] = set()
        i = 0
        for level, n in zip(LEVELS, counts):
            for _ in range(n):
                place = places[i]
                i += 1
                sid = f"SK{i:03d}"
                name = f"{place} {nm.SCHOOL_SUFFIX[level]}"
                if level == "adult" and rng.random() < 0.5:
                    name = f"{place} voksenopplæringssenter"
                short = fold(place).upper()
                if level == "upper_secondary":
                    # Every VGS offers studiespesialisering; some also music or health.
                    extra = [p for p, w in (("MD", 0.5), ("HO", 0.4)) if rng.random() < w]
                    self.programmes[sid] = ["ST", *extra]
                self.rows["school"].append((sid, nm.org_number(rng, orgs), name, short, level))
                self.schools.append((sid, short, level))

    def build_employees(self, students_per_school: list[int]) -> None:
        """Leaders, staff and teachers per school; a few left, a few start soon, some at two schools."""
        rng, as_of = self.rng, self.as_of
        emp_rows = self.rows["employment"]
        counts = _split(self.scale.employees, [max(n, 1) for n in students_per_school])
        for (sid, _short, _level), n_emp, n_stud in zip(self.schools, counts, students_per_school):
            n_emp = max(n_emp, 3)
            leaders = min(5, max(2, round(n_stud / 250)))
            staff = round(0.15 * n_emp)
            roles = ["leader"] * leaders + ["staff"] * staff + ["teacher"] * max(1, n_emp - leaders - staff)
            pool: list[str] = []
            for role in roles:
                origin = nm.pick_origin(rng)
                female = rng.random() < 0.7  # Norwegian school staff are mostly women
                born = self._born(self.y - rng.randint(24, 64))
                given, middle, family = self._adult_name(origin, female)
                pid = self._person(given, middle, family, born, mobile=nm.mobile(rng))
                self.employees.append((pid, born.year))
                start_year = rng.randint(max(born.year + 23, self.y - 25), self.y)
                start, end = dt.date(start_year, 8, 1), None
                r = rng.random()
                if r < 0.01:  # left during the last months
                    end = as_of - dt.timedelta(days=rng.randint(5, 200))
                    start = min(start, end - dt.timedelta(days=400))
                elif r < 0.015:  # hired, starts soon
                    start = as_of + dt.timedelta(days=rng.randint(1, 45))
                elif role == "teacher":
                    pool.append(pid)
                emp_rows.append(
                    (f"A{len(emp_rows) + 1:07d}", pid, sid, role, start.isoformat(), end and end.isoformat())
                )
            self.pools[sid] = pool
            self.cursor[sid] = 0
        # About 3 % of teachers (at least two) also teach at a second school, often on a
        # fixed-term contract.
        sids = [s for s, _, _ in self.schools]
        teachers = [(sid, pid) for sid in sids for pid in self.pools[sid]]
        if len(sids) < 2 or not teachers:
            return
        begins = dt.date(self.y, 8, 1).isoformat()
        for sid, pid in rng.sample(teachers, min(len(teachers), max(2, round(0.03 * len(teachers))))):
            other = rng.choice([s for s in sids if s != sid])
            ends = self.year_end.isoformat() if rng.random() < 0.5 else None
            emp_rows.append((f"A{len(emp_rows) + 1:07d}", pid, other, "teacher", begins, ends))
            self.pools[other].append(pid)

    # -- students and guardians ----------------------------------------------------

    def student_counts(self) -> list[int]:
        """Students per school: cohort count times a level weight and a size factor."""
        w = [len(_GRADES[lv]) * _COHORT_WEIGHT[lv] * self.rng.uniform(0.7, 1.3) for _, _, lv in self.schools]
        return _split(self.scale.students, w)

    def build_students(self, counts: list[int]) -> list[nm.Family]:
        """Students, their enrollments and classes, grouped into families."""
        rng = self.rng
        families: list[nm.Family] = []
        non_adult = sum(n for n, (_, _, lv) in zip(counts, self.schools) if lv != "adult")
        # Each new family brings ~1.88 guardians; join an existing one often enough to land
        # on the guardian target (siblings share guardians).
        wanted = self.scale.guardians / 1.88
        sibling_p = min(0.6, max(0.0, 1 - wanted / max(non_adult, 1)))
        feeders = {
            8: [s for s, _, lv in self.schools if lv in ("primary", "combined")],
            11: [s for s, _, lv in self.schools if lv in ("lower_secondary", "combined")],
        }
        for (sid, short, level), n in zip(self.schools, counts):
            grades = _GRADES[level]
            sizes = _split(n, [rng.uniform(0.85, 1.15) for _ in grades])
            for grade, size in zip(grades, sizes):
                for prefix, psize, slots in self._programmes(sid, level, grade, size):
                    if psize <= 0:
                        continue
                    n_cls = max(1, round(psize / _CLASS_SIZE[level]))
                    cohort = _Cohort(
                        sid, short, grade, prefix, [chr(65 + i) for i in range(n_cls)],
                        [[] for _ in range(n_cls)], slots, level == "upper_secondary",
                    )  # fmt: skip
                    for k in range(psize):
                        fam = None
                        if level != "adult":
                            if families and rng.random() < sibling_p:
                                fam = self._sibling_family(families, y_born=self.y - 5 - (grade or 0))
                            if fam is None:
                                fam = nm.Family(rng)
                                families.append(fam)
                        self._student(cohort, k * n_cls // psize, level, fam, feeders)
                    self.cohorts.append(cohort)
        return families

    def _sibling_family(self, families: list[nm.Family], y_born: int) -> nm.Family | None:
        """A family with no child born the same year (siblings are not all twins), or None."""
        for _ in range(3):
            fam = families[self.rng.randrange(len(families))]
            if len(fam.children) < 4 and all(b.year != y_born for _, b in fam.children):
                return fam
        return None

    def _programmes(
        self, sid: str, level: str, grade: int | None, size: int
    ) -> list[tuple[str, int, tuple[tuple[str, ...], ...]]]:
        if level == "adult":
            return [("VO", size, nm.ADULT_SUBJECTS)]
        if level != "upper_secondary":
            return [(str(grade), size, nm.GRUNNSKOLE)]
        assert grade is not None
        vg = grade - 10
        progs = [p for p in self.programmes[sid] if (p, grade) in nm.VGS]
        shares = {"ST": 1.0, "MD": 0.22, "HO": 0.3}
        sizes = _split(size, [shares[p] for p in progs])
        return [(f"{vg}{p}", s, nm.VGS[(p, grade)]) for p, s in zip(progs, sizes)]

    def _student(
        self, cohort: _Cohort, cls: int, level: str, fam: nm.Family | None, feeders: dict[int, list[str]]
    ) -> None:
        rng, as_of, y = self.rng, self.as_of, self.y
        female = rng.random() < 0.5
        grade = cohort.grade
        if fam is None:  # adult education: many are recent immigrants
            origin = nm.pick_origin(rng) if rng.random() < 0.4 else rng.choice(tuple(nm.ORIGINS))
            born = self._born(y - rng.randint(19, 60))
            given, middle, family = self._adult_name(origin, female)
        else:
            assert grade is not None
            born = self._born(y - 5 - grade - (1 if rng.random() < 0.01 else 0))
            given = nm.given_name(rng, fam.origin, female)
            family = nm.gendered_family(fam.child_family, female)
            middle = fam.child_middle or nm.middle_name(rng, fam.origin)
        pid = self._person(given, middle, family, born)
        if fam is not None:
            fam.children.append((pid, born))
        if grade is None:
            entered = y - (1 if rng.random() < 0.5 else 0)
        else:
            entered = y - (grade - _FIRST_GRADE[level])
            if rng.random() < 0.06:  # moved here after the level's first year
                entered = rng.randint(entered, y)
        start, end = dt.date(entered, 8, 15), None
        r = rng.random()
        if r < 0.008:  # left the school: ended, not in groups any more
            if as_of - self.year_start > dt.timedelta(days=2):
                end = self.year_start + dt.timedelta(days=rng.randint(1, (as_of - self.year_start).days - 1))
            else:
                end = self.year_start - dt.timedelta(days=56)  # last 20 June
                start = min(start, dt.date(y - 1, 8, 15))
        elif r < 0.012:  # starts in a few weeks; already placed in a class
            start = as_of + dt.timedelta(days=rng.randint(1, 30))
        elif r < 0.015:  # moving away soon: still active
            end = as_of + dt.timedelta(days=rng.randint(1, 60))
        rows = self.rows["student_enrollment"]
        programme, area = nm.grep_programme(cohort.prefix, grade) if cohort.vgs else (None, None)
        rows.append(
            (f"E{len(rows) + 1:07d}", pid, cohort.school_id, grade, start.isoformat(),
             end and end.isoformat(), True, programme, area)
        )  # fmt: skip
        if end is None or end >= as_of:
            cohort.members[cls].append(pid)
        # New in 8th grade / Vg1 this year: last year's enrollment at the previous school.
        if grade in feeders and entered == y and start <= as_of and feeders[grade]:
            prev = rng.choice(feeders[grade])
            years = 7 if grade == 8 else 3
            rows.append(
                (f"E{len(rows) + 1:07d}", pid, prev, grade - 1, dt.date(y - years, 8, 15).isoformat(),
                 (self.year_start - dt.timedelta(days=56)).isoformat(), True, None, None)
            )  # fmt: skip

    def build_guardians(self, families: list[nm.Family]) -> None:
        """One or two guardians per family, linked to every child; ~1 % without NIN."""
        rng = self.rng
        reused: set[str] = set()
        links = self.rows["guardianship"]
        for fam in families:
            eldest = min(b for _, b in fam.children)
            g_ids: list[str] = []
            g1_female = rng.random() < 0.6
            for k in range(fam.n_guardians):
                female = g1_female if k == 0 else (not g1_female if rng.random() < 0.97 else g1_female)
                born_year = eldest.year - rng.randint(22, 44)
                if k == 1 and rng.random() < 0.02 and self.employees:
                    # A teacher who is also a parent: one person, two roles.
                    pid, emp_year = self.employees[rng.randrange(len(self.employees))]
                    if pid not in reused and eldest.year - 50 <= emp_year <= eldest.year - 20:
                        reused.add(pid)
                        g_ids.append(pid)
                        continue
                base = fam.family if k == 0 or not fam.g2_family else fam.g2_family
                family = nm.gendered_family(base, female)
                given = nm.given_name(rng, fam.origin, female)
                email = nm.email_for(rng, given, family, self.emails) if rng.random() < 0.95 else None
                g_ids.append(
                    self._person(
                        given, nm.middle_name(rng, fam.origin), family, self._born(born_year),
                        with_nin=rng.random() >= 0.01, email=email,
                        mobile=nm.mobile(rng) if rng.random() < 0.97 else None,
                    )
                )  # fmt: skip
            for student, _ in fam.children:
                for g in g_ids:
                    links.append((g, student))

    # -- groups --------------------------------------------------------------------

    def build_groups(self) -> None:
        """Classes, contact groups and teaching groups sized to meet the group and membership targets."""
        rng, scale = self.rng, self.scale
        n_basis = sum(len(c.letters) for c in self.cohorts)
        n_contact = sum(2 * len(c.letters) for c in self.cohorts if c.vgs)
        students = sum(len(m) for c in self.cohorts for m in c.members)
        contact_members = sum(len(m) + 2 for c in self.cohorts if c.vgs for m in c.members)
        teach_target = max(1, scale.groups - n_basis - n_contact)
        # Memberships: drop the least central subjects of some cohorts if the full
        # curriculum would overshoot the target (teachers estimated at 1.3 per group).
        fixed = students + int(1.25 * n_basis) + contact_members + int(1.3 * teach_target)
        full = sum(sum(len(m) for m in c.members) * len(c.slots) for c in self.cohorts)
        ratio = min(1.0, max(0.0, (scale.memberships - fixed) / max(full, 1)))
        carry = 0.0
        plan: list[tuple[_Cohort, list[tuple[str, list[list[str]] | None]]]] = []
        for c in self.cohorts:
            x = ratio * len(c.slots) + carry
            n = min(len(c.slots), max(1, round(x)))
            carry = x - n
            items: list[tuple[str, list[list[str]] | None]] = []
            for slot in c.slots[:n]:
                if len(slot) == 1:
                    items.append((slot[0], None))
                    continue
                chosen: list[list[str]] = [[] for _ in slot]
                weights = [len(slot) - i for i in range(len(slot))]
                for members in c.members:
                    for pid in members:
                        chosen[rng.choices(range(len(slot)), weights)[0]].append(pid)
                for code, pids in zip(slot, chosen):
                    items.append((code, [pids]))
            plan.append((c, items))
        cap = self._cap(plan, teach_target)
        start, end = self.year_start.isoformat(), self.year_end.isoformat()
        yy = f"{self.y % 100:02d}{(self.y + 1) % 100:02d}"
        for c, items in plan:
            names = [f"{c.prefix}{letter}" for letter in c.letters]
            for name, members in zip(names, c.members):
                gid = f"{c.short}-{yy}-{name}"
                self._group(gid, c, "basis", name, None, start, end, members, 2 if rng.random() < 0.25 else 1)
                if c.vgs:
                    half = (len(members) + 1) // 2
                    for h, part in enumerate((members[:half], members[half:]), 1):
                        kg = f"{c.short}-{yy}-KG-{name}-{h}"
                        self._group(kg, c, "contact", f"Kontaktgruppe {name}-{h}", None, start, end, part, 1)
            for code, picked in items:
                if picked is None:  # whole classes, possibly several classes together
                    k = len(c.letters)
                    total = sum(len(m) for m in c.members)
                    g = min(k, max(1, math.ceil(total / cap)))
                    for i in range(g):
                        lo, hi = i * k // g, (i + 1) * k // g
                        letters = c.letters[lo:hi]
                        tag = "".join(letters) if len(letters) <= 3 else f"{letters[0]}-{letters[-1]}"
                        members = [p for m in c.members[lo:hi] for p in m]
                        gname = f"{code} {c.prefix}{tag}"
                        self._group(f"{c.short}-{yy}-{code}-{c.prefix}{tag}", c, "teaching", gname, code,
                                    start, end, members, None)  # fmt: skip
                else:  # a chosen subject: its students split into groups
                    pids = picked[0]
                    if not pids:
                        continue
                    g = math.ceil(len(pids) / min(cap, _ALT_GROUP_MAX))
                    for i in range(g):
                        part = pids[i * len(pids) // g : (i + 1) * len(pids) // g]
                        tag = c.prefix if g == 1 else f"{c.prefix}-{i + 1}"
                        self._group(f"{c.short}-{yy}-{code}-{tag}", c, "teaching", f"{code} {tag}", code,
                                    start, end, part, None)  # fmt: skip

    @staticmethod
    def _cap(plan: list[tuple[_Cohort, list[tuple[str, list[list[str]] | None]]]], target: int) -> int:
        """The group-size cap whose teaching-group count comes closest to ``target``."""

        def count(cap: int) -> int:
            n = 0
            for c, items in plan:
                total = sum(len(m) for m in c.members)
                for _code, chosen in items:
                    if chosen is None:
                        n += min(len(c.letters), max(1, math.ceil(total / cap)))
                    elif chosen[0]:
                        n += math.ceil(len(chosen[0]) / min(cap, _ALT_GROUP_MAX))
            return n

        lo, hi = 1, 10_000  # count() only falls as cap grows: find the first cap at or under target
        while lo < hi:
            mid = (lo + hi) // 2
            if count(mid) <= target:
                hi = mid
            else:
                lo = mid + 1
        if lo > 1 and abs(count(lo - 1) - target) < abs(count(lo) - target):
            return lo - 1
        return lo

    def _group(
        self,
        gid: str,
        c: _Cohort,
        kind: str,
        name: str,
        code: str | None,
        start: str,
        end: str,
        students: list[str],
        teachers: int | None,
    ) -> None:
        self.rows["school_group"].append((gid, c.school_id, kind, name, code, c.grade, start, end))
        mem = self.rows["group_membership"]
        for pid in students:
            mem.append((gid, pid, "student"))
        pool = self.pools[c.school_id]
        want = teachers if teachers is not None else max(1, math.ceil(len(students) / _TEACHER_PER))
        want = min(want, len(pool))
        i = self.cursor[c.school_id]
        for k in range(want):  # round robin: spreads groups evenly over the school's teachers
            mem.append((gid, pool[(i + k) % len(pool)], "teacher"))
        self.cursor[c.school_id] = (i + want) % max(len(pool), 1)

    def build(self) -> dict[str, list[tuple[Any, ...]]]:
        """All rows, in TABLES order."""
        self.build_schools()
        counts = self.student_counts()
        self.build_employees(counts)
        families = self.build_students(counts)
        self.build_guardians(families)
        self.build_groups()
        return self.rows


def _insert(conn: sa.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Bulk insert through the DB-API cursor: SQLAlchemy's per-row work would dominate."""
    cols = TABLES[table]
    dialect = conn.dialect
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect.driver == "psycopg":  # PostgreSQL's COPY: the fastest way in by far
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if mark is None:  # other drivers: SQLAlchemy's own executemany
            t = sa.table(table, *(sa.column(c) for c in cols))
            for i in range(0, len(rows), 50_000):
                conn.execute(t.insert(), [dict(zip(cols, r)) for r in rows[i : i + 50_000]])
            return
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
        for i in range(0, len(rows), 50_000):
            cur.executemany(sql, rows[i : i + 50_000])
    finally:
        cur.close()


def generate(url: str, scale: Scale = DEMO, *, seed: int = 1, as_of: dt.date) -> dict[str, int]:
    """Create the reference schema in the empty database at ``url`` and fill it; rows per table."""
    rows = _Builder(scale, seed, as_of).build()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # A throw-away demo file: durability is not worth a 10x slower load.
                conn.exec_driver_sql("PRAGMA synchronous=OFF")
                conn.exec_driver_sql("PRAGMA journal_mode=MEMORY")
            for stmt in schema_statements():
                conn.exec_driver_sql(stmt)
            for table in TABLES:
                _insert(conn, table, rows[table])
            conn.commit()
    finally:
        engine.dispose()
    return {t: len(r) for t, r in rows.items()}
