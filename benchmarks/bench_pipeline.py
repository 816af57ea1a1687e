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
   leaves, 100 renamed persons; plan-only and recorded; and 1 % churn, recorded first, a
   wide patch), one more change of its kind planned with ``--full``,
   which makes the patch too and compares the two (the nightly check): each must be the
   same at this size, or the benchmark fails. Those ``--full`` runs are the nightly run
   (made while AD and Microsoft 365 are plan-only, or after), and their peak memory counts
   in the table's peak like every other run's;
8. not in the table, whose first run leaves AD and Microsoft 365 plan-only: a first run
   with all four targets live (AD and Microsoft 365 through the sink) on a fresh state
   store, and ``bas plan`` then ``bas sync`` on another (the sync applies the certified
   plan), with their peak memory.

The short runs (the quiet ones, the one-person plans, the class moves, the new pupil, the
leaver, the renamed persons) are taken as the fastest of three, each in its own process, as the bare SELECT
is: one sample of a two-second run varies by about 5 % here. Every sample is printed. The long runs (the
first run, ``--full``, 1 % churn) change the state or the SIS, and are one sample each.

How a run is timed is benchmarks/measure.py's (shared with bench_realtime.py); the SIS
changes are benchmarks/sis_edits.py's.

Usage: .venv/bin/python benchmarks/bench_pipeline.py [--workdir DIR] [--scale oslo|demo]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import bare_select, best_of, cli_startup, in_child  # noqa: E402
from sis_edits import RENAMED, churn, class_move, leaver, new_pupil, one_person, renamed  # noqa: E402

from connectors.base import Applied, Connector  # noqa: E402
from provisioner import config  # noqa: E402
from provisioner.run import patch_check, runner  # noqa: E402
from provisioner.state.store import StateStore  # noqa: E402

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


SUNK = ("ad", "m365")  # the targets the sink records


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


# The kinds of change taken in both phases: the check's name, the row's title.
ONE_PERSON = ("one changed person", "plan after one changed person ({})")
CLASS_MOVE = ("class move", "plan after a class move ({})")
LEAVER = ("pupil leaves", "plan after a pupil leaves ({})")


class Bench:
    """One benchmark run's owner: its work folder and SIS, the day, the baseline, and the
    patch checks and their ``--full`` runs as they accumulate."""

    def __init__(self, work: Path, db: Path, as_of: dt.date, bare: float) -> None:
        self.work, self.db, self.as_of, self.bare = work, db, as_of, bare
        self.day = as_of.isoformat()
        self.checks: dict[str, str] = {}  # row -> "same" or what went wrong
        self.full_runs: list[dict] = []  # the --full runs of the patch checks: their peaks count too
        # a different pupil each sample, in both phases (one that moved or left is not taken again)
        self.moves, self.leavers = iter(range(1_000)), iter(range(1_000))

    def one_person(self) -> str:
        return one_person(self.db)

    def class_move(self) -> str:
        return class_move(self.db, next(self.moves))

    def leaver(self) -> str:
        return leaver(self.db, self.as_of, next(self.leavers))

    def cfg(self, mode: str) -> config.Config:
        """The benchmark's config with AD and Microsoft 365 in ``mode`` ("plan" or "apply")."""
        return config.parse(CONFIG.format(ad_mode=mode), base_dir=str(self.work))

    def store(self, mode: str = "plan") -> StateStore:
        cfg = self.cfg(mode)
        return StateStore(cfg.sqlalchemy_url(cfg.state.url))

    def plan_only(self, dry_run: bool = False, full: bool = False) -> runner.RunOutcome:
        """A sync with AD and Microsoft 365 plan-only (``dry_run``: nothing recorded)."""
        return runner.sync(self.cfg("plan"), self.store(), dry_run=dry_run, as_of=self.day, full=full)

    def plan_only_full(self) -> runner.RunOutcome:
        return self.plan_only(dry_run=True, full=True)

    def dry(self, full: bool = False) -> runner.RunOutcome:
        """A dry run with all four targets applied (AD and Microsoft 365 recorded by the sink)."""
        return runner.sync(self.cfg("apply"), self.store("apply"), dry_run=True, as_of=self.day, full=full)

    def sunk_sync(self) -> runner.RunOutcome:
        """A sync with all four targets applied, AD and Microsoft 365 recorded through the sink.
        Only in a run's own process (``in_child``): the sink stays in place for the rest of it."""
        real_build = runner.build_connector
        runner.build_connector = lambda cfg, name: Sink(name) if name in SUNK else real_build(cfg, name)
        return runner.sync(self.cfg("apply"), self.store("apply"), as_of=self.day)

    def dry_full(self) -> runner.RunOutcome:
        return self.dry(full=True)

    def show(self, title: str, got: dict) -> dict:
        """Print a short run's line: seconds, changes, basis, ratio, peak, samples."""
        print(
            f"{title}: {got['seconds']:.2f} s  ({got['changes']:,} changes, basis {got['basis']};"
            f" {got['seconds'] / self.bare:.2f} x bare SELECT; peak {got['peak_mb']:.0f} MB;"
            f" samples {got['samples']})"
        )
        return got

    def row(self, check: str, title: str, change: Callable[[], object], *, plan_only: bool) -> dict:
        """A patched row: the best of three dry runs after one more ``change`` each (the caller
        made the first), then one more change planned ``--full`` (the patch checked against
        it, kept as ``check``). ``plan_only``: AD and Microsoft 365 plan-only, or recorded."""
        run, full = (self.plan_only_dry, self.plan_only_full) if plan_only else (self.dry, self.dry_full)
        got = self.show(title, best_of(run, before=change))
        self.checks[check] = self.check(change, full)
        return got

    def check(self, change: Callable[[], object], full: Callable[[], runner.RunOutcome]) -> str:
        """Whether a row's patch is right at this size: one more change of its kind, then a
        ``--full`` run, which also makes the patch the certificate allows and compares the two
        (provisioner.run.patch_check.check, as the nightly run does). The property tests
        check the same on small random owners; this checks it on the owner the row timed.
        The run is kept in ``full_runs``: with AD and Microsoft 365 plan-only it is the nightly
        run of an owner rolling BAS out, and its peak memory is one of the table's."""
        change()
        got = in_child(full)
        self.full_runs.append(got)
        store = self.store()
        try:
            kept = store.meta.get(patch_check.CHECK_KEY)
        finally:
            store.close()
        found = json.loads(kept) if kept else {}
        if found.get("run_id") != got["run_id"]:
            return "NOT PATCHED (the run could not patch this change)"
        return "same" if found.get("same") else "DIFFERENT"

    def plan_only_dry(self) -> runner.RunOutcome:
        return self.plan_only(dry_run=True)

    def edit_row(self, check: str, title: str, change: Callable[[], str], *, plan_only: bool) -> dict:
        """``row`` for one kind of SIS change: the first ``change`` made here, what it
        returns (a person id, a count) put in ``title``'s ``{}``; both say "plan-only" when so."""
        title = title.format(change())
        if plan_only:
            check, title = f"{check}, plan-only", f"{title}, AD + M365 plan-only"
        return self.row(check, title, change, plan_only=plan_only)


def plan_only_rows(b: Bench) -> dict[str, dict]:
    """The first run, then the rows taken while AD and Microsoft 365 are plan-only (how owners
    roll BAS out): their ~290,000 changes stay pending, and no run may recompute them."""
    got = {"first": in_child(b.plan_only)}
    print(
        f"first full plan (4 targets) + file apply: {got['first']['seconds']:7.1f} s"
        f"  ({got['first']['changes']:,} changes, status {got['first']['status']},"
        f" peak {got['first']['peak_mb']:.0f} MB)"
    )
    print("   " + str(got["first"]["summary"]))
    got["quiet_plan"] = b.show("quiet sync, AD + M365 plan-only", best_of(b.plan_only))
    # One person renamed: nearly everyone has a change pending in AD and Microsoft 365, so the
    # patch must splice theirs in without decoding all of them.
    got["single_pending"] = b.edit_row(*ONE_PERSON, b.one_person, plan_only=True)
    got["move_pending"] = b.edit_row(*CLASS_MOVE, b.class_move, plan_only=True)
    # A new pupil (person, enrollment, class). Each sample's pupil is recorded (a sync, as the
    # daemon's next run) before the next comes: a username planned and not recorded leaves
    # the next joiner to a full plan.
    pupils = iter(range(1_000))
    pid = new_pupil(b.db, b.as_of, next(pupils))

    def recorded_and_another() -> None:
        in_child(b.plan_only)
        new_pupil(b.db, b.as_of, next(pupils))

    got["joiner_pending"] = b.row(
        "new pupil, plan-only",
        f"plan after a new pupil ({pid}), AD + M365 plan-only",
        recorded_and_another,
        plan_only=True,
    )
    in_child(b.plan_only)  # the last recorded
    # A pupil leaves (an end date on their enrollment).
    got["leaver_pending"] = b.edit_row(*LEAVER, b.leaver, plan_only=True)
    # Many persons renamed at once (a school's e-mail domain, a batch of name fixes): their
    # context is a few percent of the owner.
    samples = iter(range(1_000))
    got["renamed_pending"] = b.edit_row(
        f"{RENAMED} renamed", "plan after {}", lambda: renamed(b.db, RENAMED, next(samples)), plan_only=True
    )
    return got


def record_with_sink(b: Bench) -> None:
    """Record AD and Microsoft 365 through the benchmark's sink (set-up for the next rows)."""
    sink = in_child(b.sunk_sync)  # in its own process: the sink replaces the connectors there only
    print(
        f"record AD + M365 via bench sink:         {sink['seconds']:7.1f} s  (benchmark set-up only;"
        f" peak {sink['peak_mb']:.0f} MB)"
    )


def all_live(b: Bench) -> None:
    """Not in issue 15's table, whose first run leaves AD and Microsoft 365 plan-only: a first
    run of an owner who goes live in all four targets at once (AD and Microsoft 365 through
    the sink), on a fresh state store and the SIS as the rows above left it; and ``bas plan``
    then ``bas sync`` on another fresh store, the sync applying the certified plan."""
    work = b.work / "all-live"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copyfile(b.db, work / "sis.sqlite")
    live = Bench(work, work / "sis.sqlite", b.as_of, b.bare)
    first = in_child(live.sunk_sync)
    for f in work.glob("state.sqlite*"):  # a fresh store (and files) for bas plan, then bas sync
        f.unlink()
    shutil.rmtree(work / "out", ignore_errors=True)
    planned = in_child(live.dry)
    synced = in_child(live.sunk_sync)
    print()
    print("all four targets live (not in the table; AD + M365 through the sink):")
    print(
        f"  first run: {first['seconds']:.1f} s ({first['changes']:,} changes,"
        f" {first['seconds'] / b.bare:.1f} x bare SELECT; peak {first['peak_mb']:.0f} MB)"
    )
    print(
        f"  bas plan, then bas sync: plan {planned['seconds']:.1f} s (peak {planned['peak_mb']:.0f} MB);"
        f" sync {synced['seconds']:.1f} s, basis {synced['basis']} (peak {synced['peak_mb']:.0f} MB)"
    )
    shutil.rmtree(work, ignore_errors=True)


def recorded_rows(b: Bench) -> dict[str, dict]:
    """The rows taken with all four targets recorded, then 1 % churn."""
    got = {"noop": b.show("no-op plan (4 targets)", best_of(b.dry))}
    full = got["full"] = in_child(b.dry_full)
    print(
        f"no-op plan recomputed in full (--full): {full['seconds']:.1f} s  ({full['changes']} changes;"
        f" {full['seconds'] / b.bare:.1f} x bare SELECT; what any changed input costs;"
        f" peak {full['peak_mb']:.0f} MB)"
    )
    got["single"] = b.edit_row(*ONE_PERSON, b.one_person, plan_only=False)
    got["moved"] = b.edit_row(*CLASS_MOVE, b.class_move, plan_only=False)
    got["left"] = b.edit_row(*LEAVER, b.leaver, plan_only=False)
    facts = churn(b.db, b.as_of)
    ch = got["churn"] = in_child(b.dry)
    print(
        f"plan after 1 % churn {facts}: {ch['seconds']:.1f} s"
        f" (basis {ch['basis']}, peak {ch['peak_mb']:.0f} MB)"
    )
    print("   " + str(ch["summary"]))
    # Checked as the other patched rows are: recorded (as the daemon's next run would), one
    # more 1 % churn, planned --full (the nightly run: it makes the wide patch too).
    record_with_sink(b)
    again = lambda: churn(b.db, b.as_of, seed=8, tag="TWO")  # noqa: E731 (joiners of their own)
    b.checks["1 % churn"] = b.check(again, b.dry_full)
    return got


def report(b: Bench, runs: dict[str, dict], pending_checks: int) -> None:
    """Issue 15's table, the rows not in it, and the patch checks; fails when a check did."""
    bare = b.bare
    peak = max(r["peak_mb"] for r in [*runs.values(), *b.full_runs])
    nightly = max(r["peak_mb"] for r in b.full_runs[:pending_checks])
    print(f"peak memory of the patch checks' --full runs, AD + M365 plan-only: {nightly:7.0f} MB")
    print(f"peak memory of one run (largest above, sink set-up aside): {peak:7.0f} MB")
    help_s, python_s = cli_startup()
    print()
    print("issue 15's table (ratios to the bare SELECT of this run):")
    table = [
        ("quiet run, AD + M365 plan-only", runs["quiet_plan"]["seconds"] / bare, 2.0, "x"),
        ("quiet run, all four recorded", runs["noop"]["seconds"] / bare, 2.0, "x"),
        ("one changed person", runs["single"]["seconds"] / bare, 2.0, "x"),
        ("one changed person, plan-only", runs["single_pending"]["seconds"] / bare, 2.0, "x"),
        ("1 % churn", runs["churn"]["seconds"] / bare, 5.0, "x"),
        ("first full run + file apply", runs["first"]["seconds"] / bare, 25.0, "x"),
        ("peak memory of any run", peak, 1024.0, " MB"),
        ("bas --help start-up", help_s, 0.3, " s"),
    ]
    for name, value, target, unit in table:
        verdict = "OK" if value <= target else "OVER"
        print(f"  {name:<32} {value:8.2f}{unit:<3}  target <= {target:g}{unit.strip()}  {verdict}")
    print(f"  (bas --help is {help_s / python_s:.1f} x a bare python start-up of {python_s * 1000:.0f} ms)")

    def x(name: str) -> str:
        return f"{runs[name]['seconds'] / bare:.2f} x"

    print(
        f"  (not in the table: a class move {x('moved')}, with AD + M365 plan-only {x('move_pending')};"
        f" a new pupil, AD + M365 plan-only {x('joiner_pending')}; a pupil who leaves {x('left')},"
        f" with AD + M365 plan-only {x('leaver_pending')}; {RENAMED} renamed persons, AD + M365"
        f" plan-only {x('renamed_pending')}; --full {runs['full']['seconds'] / bare:.1f} x)"
    )
    print("patched plans against the full plan of the same inputs (one more change each, planned --full):")
    for name, verdict in b.checks.items():
        print(f"  {name:<32} {verdict}")
    if any(v != "same" for v in b.checks.values()):
        raise SystemExit("a patched plan is not the full plan of the same inputs: a bug in the patch")


def main() -> None:
    """Run the phases and print their figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--scale", default="oslo", choices=["oslo", "demo"])
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bas-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    as_of = dt.date.today()
    db = generate(work, args.scale, as_of)
    bare, rows = bare_select(db)
    print(f"bare SELECT ({rows:,} rows, sqlite3):   {bare:7.2f} s")
    b = Bench(work, db, as_of, bare)
    runs = plan_only_rows(b)
    pending_checks = len(b.full_runs)  # those so far were made while AD + M365 are plan-only
    record_with_sink(b)
    runs |= recorded_rows(b)
    report(b, runs, pending_checks)
    all_live(b)


def generate(work: Path, scale: str, as_of: dt.date) -> Path:
    """A fresh SIS in the work folder (``demo.data.generate``, seed 1), in its own process."""
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
                f"print(d.generate('sqlite:///{db}', d.{scale.upper()}, seed=1,"
                f" as_of=dt.date.fromisoformat('{as_of}')))"
            ),
        ],
        check=True,
        cwd=ROOT,
    )
    print(f"generate SIS ({scale}):            {time.perf_counter() - t0:7.1f} s  (set-up)")
    return db


if __name__ == "__main__":
    main()
