"""Benchmark: the whole pipeline on an Oslo-size school owner (issue: core pipeline).

Phases; each run is its own forked process, as in production (the systemd unit starts
one process per run), so each peak memory figure is that run's own (the larger of the
run process's peak RSS and the sampled peak of the summed PSS of the run process and the
worker processes it forks to apply file targets):

1. bare SELECT: the default source queries with the sqlite3 driver, fetchall only (the
   fastest of three reads);
2. first full plan for all four targets + applying the file targets (itslearning
   IMS XML, Feide LDIF); AD and Microsoft 365 are plan-only, as in the demo; then a
   quiet sync with them still plan-only (their changes pending, not recomputed);
3. recording AD and Microsoft 365 into the state store through a benchmark-only sink
   connector (accepts every change; their live connectors come in later issues), so
   that step 4 measures a true no-op for all four targets — reported separately;
4. a no-op plan right after (all four targets): certified, as every input is unchanged;
   then the same no-op recomputed in full (``--full``), for comparison;
5. a plan after one person's name changed, and after one pupil moved to another class
   (each also before step 3, while AD and Microsoft 365 are plan-only with a change
   pending for nearly everyone), after a new pupil came (before step 3 only: each
   sample's pupil is recorded by a sync before the next comes), after a pupil left (an
   end date on their enrollment; before and after step 3), after 100 persons were
   renamed at once (before step 3), then after 1 % churn (leavers, joiners, renames,
   moved memberships);
6. `bas --help` start-up; then issue 15's table, each figure against its target;
7. after each patched row (one changed person, a class move, a new pupil, a pupil who
   leaves, 100 renamed persons; plan-only and recorded), one more change of its kind planned with ``--full``,
   which makes the patch too and compares the two (the nightly check): each must be the
   same at this size, or the benchmark fails. Those ``--full`` runs are the nightly run
   (made while AD and Microsoft 365 are plan-only, or after), and their peak memory counts
   in the table's peak like every other run's.

The short runs (the quiet ones, the one-person plans, the class moves, the new pupil, the
leaver, the renamed persons) are taken as the fastest of three, each in its own process, as the bare SELECT
is: one sample of a two-second run varies by about 5 % here. Every sample is printed. The long runs (the
first run, ``--full``, 1 % churn) change the state or the SIS, and are one sample each.

Usage: .venv/bin/python benchmarks/bench_pipeline.py [--workdir DIR] [--scale oslo|demo]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.base import Applied, Connector  # noqa: E402
from provisioner import config  # noqa: E402
from provisioner.core import nin as nin_mod  # noqa: E402
from provisioner.run import patch_check, runner  # noqa: E402
from provisioner.state.store import StateStore  # noqa: E402
from sources.sql import DEFAULT_QUERIES  # noqa: E402

CONFIG = """
[owner]
name = "Oslo-size kommune"
org_number = "999888777"
realm = "bench.kommune.no"
mail_domain = "bench.kommune.no"
[source]
url = "sqlite:///sis.sqlite"
[state]
url = "sqlite:///state.sqlite"
[safety]
# the benchmark measures the pipeline, not the safety rules: nothing may hold its runs
max_deletes = 1000000
max_delete_percent = 100
max_member_removals = 100000000
max_member_removal_percent = 100
[targets.ad]
mode = "{ad_mode}"
base_dn = "OU=Skoler,DC=bench,DC=local"
# connection settings are required in apply mode; the benchmark's sink replaces the connector
url = "ldaps://dc.bench.invalid"
ca_file = "ca.pem"
bind_dn = "CN=bas,DC=bench,DC=local"
password_file = "ad.pw"
[targets.m365]
mode = "{ad_mode}"
tenant_id = "00000000-0000-0000-0000-000000000000"
client_id = "00000000-0000-0000-0000-000000000001"
client_secret_file = "m365.secret"
[targets.itslearning]
output_dir = "out/itslearning"
[targets.feide]
output_dir = "out/feide"
base_dn = "dc=bench,dc=kommune,dc=no"
"""


class Sink(Connector):
    """Benchmark-only connector: accepts every change (measures the core, not a target)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def begin(self, run_id, resolve):  # noqa: ANN001, D102
        pass

    def apply(self, change):  # noqa: ANN001, D102
        return Applied(anchor=change.anchor or f"{self.target}:{change.key}")

    def finish(self, current):  # noqa: ANN001, D102
        pass

    def close(self):  # noqa: D102
        pass


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_select(db: Path, times: int = 3) -> tuple[float, int]:
    """Seconds and rows to SELECT every source table with the driver alone.

    The fastest of ``times`` reads: one slow moment of the machine must not make every
    ratio of the run look better than it is (a smaller baseline only makes them larger).
    """
    best, n = float("inf"), 0
    for _ in range(times):
        t0 = time.perf_counter()
        con = sqlite3.connect(db)
        n = 0
        for q in DEFAULT_QUERIES.values():
            n += len(con.execute(q).fetchall())
        con.close()
        best = min(best, time.perf_counter() - t0)
    return best, n


def churn(db: Path, as_of: dt.date, seed: int = 7) -> dict[str, int]:
    """Change about 1 % of the owner: leavers, joiners, renames, moved memberships."""
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
        pid = f"NEW{i:07d}"
        joiners.append(pid)
        con.execute(
            "INSERT INTO person (person_id, nin, given_name, family_name) VALUES (?, NULL, ?, ?)",
            (pid, rng.choice(["Ola", "Kari", "Nora", "Jakob"]), rng.choice(["Nordmann", "Berg", "Dahl"])),
        )
        con.execute(
            "INSERT INTO student_enrollment"
            " (enrollment_id, person_id, school_id, grade, start_date, end_date, main_school)"
            " VALUES (?, ?, ?, 5, ?, NULL, 1)",
            (f"ENEW{i:07d}", pid, rng.choice(schools), (as_of - dt.timedelta(days=2)).isoformat()),
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


def main() -> None:
    """Run the phases and print their figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--scale", default="oslo", choices=["oslo", "demo"])
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bas-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    as_of = dt.date.today()
    db = work / "sis.sqlite"
    for f in work.glob("*.sqlite*"):
        f.unlink()
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import datetime as dt; from demo import data as d;"
                f"print(d.generate('sqlite:///{db}', d.{args.scale.upper()}, seed=1,"
                f" as_of=dt.date.fromisoformat('{as_of}')))"
            ),
        ],
        check=True,
        cwd=ROOT,
    )
    print(f"generate SIS ({args.scale}):            {time.perf_counter() - t0:7.1f} s  (set-up)")

    def cfg_for(mode: str) -> config.Config:
        return config.parse(CONFIG.format(ad_mode=mode), base_dir=str(work))

    bare, rows = bare_select(db)
    print(f"bare SELECT ({rows:,} rows, sqlite3):   {bare:7.2f} s")
    day = as_of.isoformat()

    def plan_store() -> StateStore:
        return _store(cfg_for("plan"))

    def plan_only(dry_run: bool = False, full: bool = False) -> runner.RunOutcome:
        """A sync with AD and Microsoft 365 plan-only (``dry_run``: nothing recorded)."""
        return runner.sync(cfg_for("plan"), plan_store(), dry_run=dry_run, as_of=day, full=full)

    def plan_only_full() -> runner.RunOutcome:
        return plan_only(dry_run=True, full=True)

    first = in_child(plan_only)
    print(
        f"first full plan (4 targets) + file apply: {first['seconds']:7.1f} s"
        f"  ({first['changes']:,} changes, status {first['status']}, peak {first['peak_mb']:.0f} MB)"
    )
    print("   " + str(first["summary"]))

    # A quiet sync while AD and Microsoft 365 are still plan-only (how owners roll BAS out):
    # their ~290,000 changes stay pending, and the run must not recompute them.
    quiet_plan = best_of(plan_only)
    print(
        f"quiet sync, AD + M365 plan-only:         {quiet_plan['seconds']:7.2f} s"
        f"  ({quiet_plan['changes']:,} changes pending, basis {quiet_plan['basis']};"
        f" {quiet_plan['seconds'] / bare:.2f} x bare SELECT; peak {quiet_plan['peak_mb']:.0f} MB;"
        f" samples {quiet_plan['samples']})"
    )

    # One person renamed while AD and Microsoft 365 are still plan-only: nearly everyone has a
    # change pending there, so the patch must splice theirs in without decoding all of them.
    one_pending = one_person(db)
    single_pending = best_of(
        lambda: plan_only(dry_run=True),
        before=lambda: one_person(db),
    )
    print(
        f"plan after one changed person ({one_pending}), AD + M365 plan-only:"
        f" {single_pending['seconds']:.2f} s"
        f"  (basis {single_pending['basis']}; {single_pending['seconds'] / bare:.2f} x bare SELECT;"
        f" peak {single_pending['peak_mb']:.0f} MB; samples {single_pending['samples']})"
    )

    full_runs: list[dict] = []  # the --full runs of the patch checks: their peaks count too
    checks = {
        "one changed person, plan-only": check_patch(
            lambda: one_person(db), plan_only_full, plan_store, full_runs
        )
    }

    def pending(check: str, title: str, change: Callable[[], object]) -> dict:
        """A plan-only row: the best of three dry runs after one more ``change`` each, then
        one more planned ``--full`` (the patch checked against it, kept as ``check``)."""
        got = sampled(title, lambda: plan_only(dry_run=True), change, bare)
        checks[check] = check_patch(change, plan_only_full, plan_store, full_runs)
        return got

    moves = iter(range(1_000))  # a different pupil each time
    first_move = class_move(db, next(moves))
    move_pending = pending(
        "class move, plan-only",
        f"plan after a class move ({first_move}), AD + M365 plan-only",
        lambda: class_move(db, next(moves)),
    )

    # A new pupil (person, enrollment, class) while AD and Microsoft 365 are plan-only. Each
    # sample's pupil is recorded (a sync, as the daemon's next run) before the next comes:
    # a username planned and not recorded leaves the next joiner to a full plan.
    pupils = iter(range(1_000))
    first_pupil = new_pupil(db, as_of, next(pupils))

    def recorded_and_another() -> None:
        in_child(plan_only)
        new_pupil(db, as_of, next(pupils))

    joiner_pending = pending(
        "new pupil, plan-only",
        f"plan after a new pupil ({first_pupil}), AD + M365 plan-only",
        recorded_and_another,
    )
    in_child(plan_only)  # the last recorded

    # A pupil leaves (an end date on their enrollment) while AD and Microsoft 365 are plan-only.
    leavers = iter(range(1_000))
    first_leaver = leaver(db, as_of, next(leavers))
    leaver_pending = pending(
        "pupil leaves, plan-only",
        f"plan after a pupil leaves ({first_leaver}), AD + M365 plan-only",
        lambda: leaver(db, as_of, next(leavers)),
    )

    # Many persons renamed at once (a school's e-mail domain, a batch of name fixes), while
    # AD and Microsoft 365 are plan-only: their context is a few percent of the owner.
    rename_samples = iter(range(1_000))
    first_batch = renamed(db, RENAMED, next(rename_samples))
    renamed_pending = pending(
        f"{RENAMED} renamed, plan-only",
        f"plan after {first_batch}, AD + M365 plan-only",
        lambda: renamed(db, RENAMED, next(rename_samples)),
    )

    pending_checks = len(full_runs)  # those so far were made while AD + M365 are plan-only

    def record_with_sink() -> runner.RunOutcome:
        real_build = runner.build_connector
        sunk = ("ad", "m365")
        runner.build_connector = lambda cfg, name: Sink(name) if name in sunk else real_build(cfg, name)
        return runner.sync(cfg_for("apply"), _store(cfg_for("apply")), as_of=day)

    sink = in_child(record_with_sink)
    print(
        f"record AD + M365 via bench sink:         {sink['seconds']:7.1f} s  (benchmark set-up only;"
        f" peak {sink['peak_mb']:.0f} MB)"
    )

    def dry(full: bool = False) -> runner.RunOutcome:
        return runner.sync(cfg_for("apply"), _store(cfg_for("apply")), dry_run=True, as_of=day, full=full)

    noop = best_of(dry)
    print(
        f"no-op plan (4 targets):                  {noop['seconds']:7.2f} s  ({noop['changes']} changes,"
        f" basis {noop['basis']}; {noop['seconds'] / bare:.2f} x bare SELECT, target <= 3;"
        f" peak {noop['peak_mb']:.0f} MB; samples {noop['samples']})"
    )
    full = in_child(lambda: dry(full=True))
    print(
        f"no-op plan recomputed in full (--full):  {full['seconds']:7.1f} s  ({full['changes']} changes; "
        f"{full['seconds'] / bare:.1f} x bare SELECT; what any changed input costs;"
        f" peak {full['peak_mb']:.0f} MB)"
    )

    one = one_person(db)
    single = best_of(dry, before=lambda: one_person(db))
    print(
        f"plan after one changed person ({one}):   {single['seconds']:7.2f} s  ({single['changes']} changes,"
        f" basis {single['basis']}; {single['seconds'] / bare:.2f} x bare SELECT;"
        f" peak {single['peak_mb']:.0f} MB; samples {single['samples']})"
    )

    checks["one changed person"] = check_patch(
        lambda: one_person(db), lambda: dry(full=True), plan_store, full_runs
    )

    first_move = class_move(db, next(moves))
    moved = best_of(dry, before=lambda: class_move(db, next(moves)))
    print(
        f"plan after a class move ({first_move}): {moved['seconds']:7.2f} s  ({moved['changes']} changes,"
        f" basis {moved['basis']}; {moved['seconds'] / bare:.2f} x bare SELECT;"
        f" peak {moved['peak_mb']:.0f} MB; samples {moved['samples']})"
    )

    checks["class move"] = check_patch(
        lambda: class_move(db, next(moves)), lambda: dry(full=True), plan_store, full_runs
    )

    first_leaver = leaver(db, as_of, next(leavers))
    left = best_of(dry, before=lambda: leaver(db, as_of, next(leavers)))
    print(
        f"plan after a pupil leaves ({first_leaver}): {left['seconds']:7.2f} s  ({left['changes']} changes,"
        f" basis {left['basis']}; {left['seconds'] / bare:.2f} x bare SELECT;"
        f" peak {left['peak_mb']:.0f} MB; samples {left['samples']})"
    )

    checks["pupil leaves"] = check_patch(
        lambda: leaver(db, as_of, next(leavers)), lambda: dry(full=True), plan_store, full_runs
    )

    facts = churn(db, as_of)
    ch = in_child(dry)
    print(
        f"plan after 1 % churn {facts}: {ch['seconds']:.1f} s"
        f" (basis {ch['basis']}, peak {ch['peak_mb']:.0f} MB)"
    )
    print("   " + str(ch["summary"]))
    runs = [first, quiet_plan, single_pending, move_pending, joiner_pending, leaver_pending, renamed_pending]
    runs += [noop, full, single, moved, left, ch, *full_runs]
    peak = max(r["peak_mb"] for r in runs)
    nightly = max(r["peak_mb"] for r in full_runs[:pending_checks])
    print(f"peak memory of the patch checks' --full runs, AD + M365 plan-only: {nightly:7.0f} MB")
    print(f"peak memory of one run (largest above, sink set-up aside): {peak:7.0f} MB")
    help_s, python_s = cli_startup()
    print()
    print("issue 15's table (ratios to the bare SELECT of this run):")
    table = [
        ("quiet run, AD + M365 plan-only", quiet_plan["seconds"] / bare, 2.0, "x"),
        ("quiet run, all four recorded", noop["seconds"] / bare, 2.0, "x"),
        ("one changed person", single["seconds"] / bare, 2.0, "x"),
        ("one changed person, plan-only", single_pending["seconds"] / bare, 2.0, "x"),
        ("1 % churn", ch["seconds"] / bare, 5.0, "x"),
        ("first full run + file apply", first["seconds"] / bare, 25.0, "x"),
        ("peak memory of any run", peak, 1024.0, " MB"),
        ("bas --help start-up", help_s, 0.3, " s"),
    ]
    for name, value, target, unit in table:
        verdict = "OK" if value <= target else "OVER"
        print(f"  {name:<32} {value:8.2f}{unit:<3}  target <= {target:g}{unit.strip()}  {verdict}")
    print(f"  (bas --help is {help_s / python_s:.1f} x a bare python start-up of {python_s * 1000:.0f} ms)")
    print(
        f"  (not in the table: a class move {moved['seconds'] / bare:.2f} x, with AD + M365 plan-only"
        f" {move_pending['seconds'] / bare:.2f} x; a new pupil, AD + M365 plan-only"
        f" {joiner_pending['seconds'] / bare:.2f} x; a pupil who leaves {left['seconds'] / bare:.2f} x,"
        f" with AD + M365 plan-only {leaver_pending['seconds'] / bare:.2f} x;"
        f" {RENAMED} renamed persons, AD + M365 plan-only {renamed_pending['seconds'] / bare:.2f} x;"
        f" --full {full['seconds'] / bare:.1f} x)"
    )
    print("patched plans against the full plan of the same inputs (one more change each, planned --full):")
    for name, verdict in checks.items():
        print(f"  {name:<32} {verdict}")
    if any(v != "same" for v in checks.values()):
        raise SystemExit("a patched plan is not the full plan of the same inputs: a bug in the patch")


def check_patch(
    change: Callable[[], object],
    full: Callable[[], runner.RunOutcome],
    open_store: Callable[[], StateStore],
    full_runs: list[dict],
) -> str:
    """Whether a row's patch is right at this size: one more change of its kind, then a
    ``--full`` run, which also makes the patch the certificate allows and compares the two
    (provisioner.run.patch_check.check, as the nightly run does). The property tests
    check the same on small random owners; this checks it on the owner the row timed.
    The run is added to ``full_runs``: with AD and Microsoft 365 plan-only it is the nightly
    run of an owner rolling BAS out, and its peak memory is one of the table's."""
    change()
    got = in_child(full)
    full_runs.append(got)
    store = open_store()
    try:
        kept = store.meta.get(patch_check.CHECK_KEY)
    finally:
        store.close()
    found = json.loads(kept) if kept else {}
    if found.get("run_id") != got["run_id"]:
        return "NOT PATCHED (the run could not patch this change)"
    return "same" if found.get("same") else "DIFFERENT"


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


def cli_startup(runs: int = 7) -> tuple[float, float]:
    """Median seconds of `bas --help` and of a bare `python -c pass` (benchmarks/bench_cli_startup.py)."""
    import statistics

    def median(cmd: list[str]) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return median([sys.executable, "-m", "provisioner.cli", "--help"]), median([sys.executable, "-c", "pass"])


def _store(cfg: config.Config) -> StateStore:
    return StateStore(cfg.sqlalchemy_url(cfg.state.url))


class PssSampler:
    """Peak memory of a run and its worker processes together: the sum of their PSS.

    PSS shares each page among the processes mapping it, so forked workers are counted
    for what they add, not again for the parent's pages they share (RSS would).
    """

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, sum(_pss_kb(p) for p in _tree(self.pid)))

    def stop(self) -> float:
        """Stop sampling; the peak in MB."""
        self._done.set()
        self._thread.join()
        return self.peak / 1024


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process just ended
                todo.extend(int(c) for c in task.read_text().split())
    return out


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sampled(
    title: str, run: Callable[[], runner.RunOutcome], change: Callable[[], object], bare: float
) -> dict:
    """A short run's best of three after one more ``change`` each (the caller made the
    first), printed with its basis, ratio to the bare SELECT, peak and samples."""
    got = best_of(run, before=change)
    print(
        f"{title}: {got['seconds']:.2f} s  (basis {got['basis']}; {got['seconds'] / bare:.2f} x bare SELECT;"
        f" peak {got['peak_mb']:.0f} MB; samples {got['samples']})"
    )
    return got


def best_of(
    run: Callable[[], runner.RunOutcome], times: int = 3, before: Callable[[], object] | None = None
) -> dict:
    """The fastest of ``times`` runs, each in its own process (``before`` runs before each
    but the first: the caller made the first change); its peak is the largest of them all."""
    got = []
    for i in range(times):
        if before is not None and i:
            before()
        got.append(in_child(run))
    best = min(got, key=lambda r: r["seconds"])
    return {
        **best,
        "peak_mb": max(r["peak_mb"] for r in got),
        "samples": "/".join(f"{r['seconds']:.2f}" for r in got),
    }


def in_child(run: Callable[[], runner.RunOutcome]) -> dict:
    """Run one sync in a forked process, as each run is in production (the systemd unit
    starts a process per run), and return its figures: seconds, peak RSS, plan summary."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        t0 = time.perf_counter()
        out = run()
        secs = time.perf_counter() - t0
        plan = out.plan
        q.put(
            {
                "seconds": secs,
                "peak_mb": _peak_mb(),
                "status": out.status,
                "changes": sum(len(tp.changes) for tp in plan.targets) if plan else 0,
                "basis": plan.basis if plan else None,
                "run_id": plan.run_id if plan else None,
                "summary": plan.summary() if plan else {},
            }
        )

    proc = ctx.Process(target=child)
    proc.start()
    assert proc.pid is not None  # started
    sampler = PssSampler(proc.pid)
    result = q.get()
    proc.join()
    result["pss_mb"] = sampler.stop()
    result["peak_mb"] = max(result["peak_mb"], result["pss_mb"])
    if proc.exitcode != 0:
        raise SystemExit(f"benchmark run failed in its process (exit {proc.exitcode})")
    return result


if __name__ == "__main__":
    main()
