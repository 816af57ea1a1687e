"""The whole pipeline through runner.sync on tiny SIS databases: lifecycle, identity, safety, saved plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from provisioner.core.plan import CORE, Op, Plan
from provisioner.run import runner
from provisioner.run.runner import EXIT_ERRORS, EXIT_HELD, EXIT_OK, EXIT_USAGE, RunOutcome
from provisioner.state import schema as t
from provisioner.state.nins import nin_seal
from provisioner.state.store import StateStore
from tests.sisbuilder import Sis, bad_check_digit, make_config, nin_pair, small_sis

DAY1, DAY2, DAY3 = "2025-10-01", "2025-10-02", "2025-11-03"


class Env:
    """A tiny SIS, its config and state store; ``sync`` writes the SIS and runs."""

    def __init__(self, tmp: Path, sis: Sis, state_url: str | None = None, **cfg: Any) -> None:
        self.tmp, self.sis = tmp, sis
        self.src = f"sqlite:///{tmp / 'sis.db'}"
        self.store = StateStore(state_url or f"sqlite:///{tmp / 'state.db'}")
        self.configure(**cfg)

    def configure(self, **cfg: Any) -> None:
        self.cfg = make_config(self.tmp, self.src, self.store.url, **cfg)

    def sync(self, as_of: str, **kw: Any) -> RunOutcome:
        self.sis.write(self.src)
        return runner.sync(self.cfg, self.store, as_of=as_of, **kw)

    def objects(self, target: str) -> dict[str, dict[str, Any]]:
        return {o["key"]: o for o in self.store.objects.iterate(target)}

    def persons(self, target: str) -> dict[str, dict[str, Any]]:
        return {k: o for k, o in self.objects(target).items() if o["kind"] == "person"}

    def username(self, pid: str) -> str:
        return self.store.identities.all()[pid].username

    def changelog(self, run_id: str) -> list[dict[str, Any]]:
        with self.store.engine.connect() as c:
            rows = c.execute(
                sa.select(t.changelog).where(t.changelog.c.run_id == run_id).order_by(t.changelog.c.id)
            )
            return [dict(r) for r in rows.mappings()]


def ops(out: RunOutcome, target: str) -> list[tuple[str, str]]:
    tp = out.plan.target(target)
    return [(c.op.value, c.key) for c in tp.changes] if tp else []


def ok(out: RunOutcome) -> RunOutcome:
    assert (out.exit_code, out.status) == (EXIT_OK, "done"), (
        out.status,
        out.message,
        out.plan and out.plan.errors,
    )
    return out


@pytest.fixture()
def env(tmp_path: Path):  # noqa: ANN201
    e = Env(tmp_path, small_sis())
    ok(e.sync(DAY1))
    yield e
    e.store.close()


# -- lifecycle ---------------------------------------------------------------------------------------------


def test_first_run_creates_everyone_and_a_rerun_nothing(env: Env) -> None:
    assert len(env.persons("itslearning")) == 12
    assert len(env.persons("feide")) == 9  # no guardians
    again = ok(env.sync(DAY1))
    for target in (CORE, "itslearning", "feide"):
        assert ops(again, target) == []


def test_student_leaves_and_comes_back(env: Env) -> None:
    user = env.username("S3")
    env.sis.end_enrollments("S3", DAY1)
    out = ok(env.sync(DAY2))
    assert ("delete", "S3") in ops(out, "itslearning") and ("delete", "S3") in ops(out, "feide")
    assert ops(out, CORE) == [("disable", "S3")]
    removed = [c for c in out.plan.target("itslearning").changes if c.op == Op.REMOVE_MEMBERS]
    assert {(c.key, c.members) for c in removed} == {
        ("NORD-MAT", (("S3", "01"),)),
        ("school:NORD:students", (("S3", "01"),)),
    }
    assert "S3" not in env.persons("itslearning") and "S3" not in env.persons("feide")
    ident = env.store.identities.all()["S3"]
    # The lifecycle clocks count from the SIS end date, not from the day BAS noticed.
    assert (ident.status, ident.username, ident.inactive_since) == ("inactive", user, DAY1)
    assert env.store.identities.username_record(user)["person_id"] == "S3"
    assert ok(env.sync(DAY2)).plan.target(CORE).changes == ()

    env.sis.enroll("S3", "NORD", start="2025-11-01")
    back = ok(env.sync(DAY3))
    assert ops(back, CORE) == [("enable", "S3")]
    assert ("create", "S3") in ops(back, "itslearning") and ("create", "S3") in ops(back, "feide")
    assert env.persons("itslearning")["S3"]["attrs"]["userid"] == user
    assert env.persons("feide")["S3"]["attrs"]["uid"] == user
    assert env.store.identities.all()["S3"].status == "active" and env.username("S3") == user


def test_student_returns_under_a_new_sis_id_with_the_same_nin(env: Env) -> None:
    user = env.username("S4")
    old = env.sis.get_person("S4")
    env.sis.remove_person("S4")
    # One of the 4 guardianships goes with S4's record: 25 % fewer, past the per-table gate's 20 %.
    env.configure(safety={"max_source_drop_percent": 30})
    ok(env.sync(DAY2))
    env.sis.student("S4NEW", "SOR", old.given_name, old.family_name, nin=old.nin, start="2025-11-01")
    back = ok(env.sync(DAY3))
    assert ops(back, CORE) == [("create", "S4NEW"), ("enable", "S4")]
    assert env.username("S4") == user and "S4NEW" not in env.store.identities.all()
    assert env.store.identities.view().aliases == {"S4NEW": "S4"}
    assert env.persons("itslearning")["S4"]["attrs"]["userid"] == user
    assert ok(env.sync(DAY3)).plan.target(CORE).changes == ()


def test_rename_keeps_the_username(env: Env) -> None:
    user = env.username("S2")
    env.sis.update_person("S2", family_name="Berg-Ødegård")
    out = ok(env.sync(DAY2))
    (core,) = out.plan.target(CORE).changes
    assert core.op == Op.UPDATE and core.attrs == {"display_name": "Kari Berg-Ødegård"}
    assert core.before == {"display_name": "Kari Hansen"}
    (its,) = [c for c in out.plan.target("itslearning").changes if c.key == "S2"]
    assert its.op == Op.UPDATE and its.attrs["family"] == "Berg-Ødegård" and its.before["family"] == "Hansen"
    assert "userid" not in its.attrs
    (fei,) = [c for c in out.plan.target("feide").changes if c.key == "S2"]
    assert fei.op == Op.UPDATE and fei.attrs["sn"] == "Berg-Ødegård" and "uid" not in fei.attrs
    assert env.username("S2") == user
    assert env.persons("feide")["S2"]["attrs"]["displayName"] == "Kari Berg-Ødegård"


def test_dnumber_replaced_by_fodselsnummer(tmp_path: Path) -> None:
    dnr, fnr = nin_pair()
    sis = small_sis().student("D1", "NORD", "Muhammad", "Ali", nin=dnr)
    e = Env(tmp_path, sis)
    try:
        ok(e.sync(DAY1))
        user = e.username("D1")
        e.sis.update_person("D1", nin=fnr)
        out = ok(e.sync(DAY2))
        (core,) = out.plan.target(CORE).changes
        assert (core.op, dict(core.attrs), dict(core.before)) == (Op.UPDATE, {"nin": fnr}, {"nin": dnr})
        assert ops(out, "feide") == [("update", "D1")]
        # Planned and stored sealed (the historic base alone keeps it whole), written whole.
        sealed = nin_seal(e.store)(fnr)
        assert out.plan.target("feide").changes[0].attrs == {"norEduPersonNIN": sealed}
        assert e.persons("feide")["D1"]["attrs"]["norEduPersonNIN"] == sealed
        (delta,) = [p for p in (tmp_path / "feide").glob("feide-delta-*.ldif") if fnr in p.read_text()]
        assert f"norEduPersonNIN: {fnr}\n" in delta.read_text() and "*****" not in delta.read_text()
        assert ops(out, "itslearning") == []  # no NIN there (sourcedid is the person_id)
        assert e.username("D1") == user and e.store.identities.all()["D1"].nin == fnr
        assert {dnr, fnr} <= set(e.store.identities.view().person_by_nin)
        assert e.persons("feide")["D1"]["attrs"]["uid"] == user
    finally:
        e.store.close()


def test_a_bad_record_freezes_that_person_and_the_run_goes_on(env: Env) -> None:
    s1 = env.sis.get_person("S1")
    env.sis.update_person("S1", nin=bad_check_digit(s1.nin))
    env.sis.update_person("S5", given_name="Nils Ny")
    out = env.sync(DAY2)
    assert (out.exit_code, out.status) == (EXIT_ERRORS, "done_with_errors")
    assert [e.record for e in out.plan.errors] == ["person:S1"]
    assert ("update", "S5") in ops(out, "itslearning")
    assert not [c for c in out.plan.changes() if c.key == "S1" or ("S1", "01") in c.members]
    assert "S1" in env.persons("itslearning") and "S1" in env.persons("feide")
    assert env.store.identities.all()["S1"].status == "active"


# -- data minimisation ------------------------------------------------------------------------------------


def test_guardians_only_in_itslearning(env: Env) -> None:
    guardians = {"G1", "G2", "G3"}
    its = env.persons("itslearning")
    assert guardians <= set(its)
    assert its["G1"]["attrs"]["institutionrole"] == "Guest" and its["G1"]["attrs"]["students"] == ["S1", "S2"]
    assert not guardians & set(env.persons("feide"))
    plan = env.sync(DAY1, dry_run=True).plan
    for target in ("ad", "m365"):
        keys = {c.key for c in plan.target(target).changes if c.kind == "person"}
        assert keys and not guardians & keys, target
        members = {m[0] for c in plan.target(target).changes for m in c.members}
        assert not guardians & members, target


def test_no_nin_in_ad_or_m365_plans(env: Env) -> None:
    plan = env.sync(DAY1, dry_run=True).plan
    nins = {p.nin for p in env.sis.persons if p.nin}
    assert len(nins) == 9
    for target in ("ad", "m365", "itslearning"):
        text = json.dumps(plan.target(target).to_json(), ensure_ascii=False)
        assert not [n for n in nins if n in text], target
    assert plan.target("ad").changes and plan.target("m365").changes  # plan-only targets plan every run
    # Feide carries them: its objects and plans hold them sealed, its files whole.
    seal = nin_seal(env.store)
    feide = {o["attrs"].get("norEduPersonNIN") for o in env.persons("feide").values()}
    assert feide == {seal(n) for n in nins}
    latest = (env.tmp / "feide" / "latest-full.ldif").read_text()
    assert {n for n in nins if f"norEduPersonNIN: {n}\n" in latest} == nins


# -- safety: thresholds, the gate ---------------------------------------------------------------------------


def test_threshold_holds_then_approve_applies_exactly_the_held_changes(env: Env) -> None:
    env.configure(safety={"max_deletes": 1, "max_source_drop_percent": 50})  # 3 of 12 leave: 25 %
    before = {tg: env.objects(tg) for tg in ("itslearning", "feide")}
    versions = env.store.versions.current()
    for pid in ("S2", "S3", "S5"):
        env.sis.end_enrollments(pid, DAY1)
    out = env.sync(DAY2)
    assert (out.exit_code, out.status) == (EXIT_HELD, "held")
    for tg in ("itslearning", "feide"):
        tp = out.plan.target(tg)
        assert tp.hold is not None and tp.hold.rule == "max_deletes" and tg in out.message
        assert {c.key for c in tp.changes if c.op == Op.DELETE} == {"S2", "S3", "S5"}
        assert out.results[tg].status == "held"
        assert env.objects(tg) == before[tg]  # nothing applied to a held target
        assert env.store.versions.current()[tg] == versions[tg]
    run = env.store.runs.get(out.run_id)
    assert run["status"] == "held" and run["plan"]
    held = Plan.loads(run["plan"])
    assert [tp.target for tp in held.targets] == ["itslearning", "feide"]

    approved = runner.approve(env.cfg, env.store, out.run_id, "admin")
    assert (approved.exit_code, approved.status) == (EXIT_OK, "done"), approved.message
    for tg in ("itslearning", "feide"):
        assert not {"S2", "S3", "S5"} & set(env.persons(tg))
        assert approved.results[tg].ok == len(out.plan.target(tg).changes)
    logged = [(r["target"], r["op"], r["key"]) for r in env.changelog(out.run_id) if r["target"] != CORE]
    expected = [(c.target, c.op.value, c.key) for tg in held.targets for c in tg.changes]
    assert sorted(logged) == sorted(expected)
    run = env.store.runs.get(out.run_id)
    assert run["approved_by"] == "admin" and run["plan"] is None

    again = runner.approve(env.cfg, env.store, out.run_id, "admin")
    assert again.exit_code == EXIT_USAGE and "already approved" in again.message
    after = ok(env.sync(DAY2))
    for target in (CORE, "itslearning", "feide"):
        assert ops(after, target) == []


def test_percent_threshold_per_target_override(env: Env) -> None:
    env.configure(target_settings={"feide": {"max_delete_percent": 1.0}})
    env.sis.end_enrollments("S6", DAY1)
    out = env.sync(DAY2)
    assert out.exit_code == EXIT_HELD
    assert out.plan.target("feide").hold.rule == "max_delete_percent"
    assert out.plan.target("itslearning").hold is None
    assert "S6" not in env.persons("itslearning") and "S6" in env.persons("feide")


def test_gate_refuses_a_source_that_lost_half_its_persons(env: Env) -> None:
    age_runs(env.store)
    before = {tg: env.objects(tg) for tg in ("itslearning", "feide")}
    idents, versions = env.store.identities.all(), env.store.versions.current()
    for pid in ("S1", "S2", "S3", "S4", "S5", "T1"):
        env.sis.remove_person(pid)
    out = env.sync(DAY2)
    assert (out.exit_code, out.status) == (EXIT_HELD, "refused")
    assert out.plan is None and "refusing" in out.message
    assert {tg: env.objects(tg) for tg in before} == before
    assert env.store.identities.all() == idents and env.store.versions.current() == versions
    assert env.store.runs.get(out.run_id)["status"] == "refused"
    # Still refused on the next run; approved once, the next run accepts the new size.
    assert env.sync(DAY2).status == "refused"
    assert runner.approve(env.cfg, env.store, out.run_id, "admin").exit_code == EXIT_OK
    accepted = env.sync(DAY2)
    assert accepted.exit_code == EXIT_OK, accepted.message
    assert "S1" not in env.persons("itslearning")


@pytest.mark.parametrize("how", ["no_persons", "nobody_active"])
def test_gate_refuses_an_empty_source(env: Env, how: str) -> None:
    if how == "no_persons":
        for pid in [p.person_id for p in env.sis.persons]:
            env.sis.remove_person(pid)
    else:
        env.sis.enrollments = []
        env.sis.employments = []
    versions = env.store.versions.current()
    out = env.sync(DAY2)
    assert (out.exit_code, out.status) == (EXIT_HELD, "refused") and "empty" in out.message
    assert env.store.versions.current() == versions and len(env.persons("itslearning")) == 12


# -- saved plans -------------------------------------------------------------------------------------------


def test_apply_saved_plan_once_then_stale(tmp_path: Path) -> None:
    e = Env(tmp_path, small_sis())
    try:
        dry = e.sync(DAY1, dry_run=True)
        assert (dry.exit_code, dry.status) == (EXIT_OK, "planned")
        assert e.store.identities.all() == {} and e.objects("itslearning") == {}
        saved = tmp_path / "plan.json"
        saved.write_text(dry.plan.dumps(), encoding="utf-8")
        plan = Plan.loads(saved.read_text(encoding="utf-8"))
        first = runner.apply_saved(e.cfg, e.store, plan)
        assert first.exit_code == EXIT_OK, first.message
        assert len(e.persons("itslearning")) == 12 and len(e.store.identities.all()) == 12
        second = runner.apply_saved(e.cfg, e.store, plan)
        assert (second.exit_code, second.status) == (EXIT_USAGE, "stale")
        assert "make a new plan" in second.message
        assert len(e.changelog(plan.run_id)) == sum(len(tp.changes) for tp in plan.targets if not tp.dry_run)
        assert ops(ok(e.sync(DAY1)), "itslearning") == []
    finally:
        e.store.close()


def test_saved_plan_is_stale_after_another_run(env: Env) -> None:
    env.sis.update_person("S1", family_name="Ny")
    plan = env.sync(DAY2, dry_run=True).plan
    ok(env.sync(DAY2))
    out = runner.apply_saved(env.cfg, env.store, plan)
    assert out.exit_code == EXIT_USAGE and out.status == "stale"


def test_pipeline_on_postgresql_state_store(tmp_path: Path, pg_url: str) -> None:
    e = Env(tmp_path, small_sis(), state_url=pg_url)
    try:
        ok(e.sync(DAY1))
        user = e.username("S3")
        e.sis.end_enrollments("S3", DAY1)
        out = ok(e.sync(DAY2))
        assert ("delete", "S3") in ops(out, "itslearning") and ops(out, CORE) == [("disable", "S3")]
        e.sis.enroll("S3", "NORD", start="2025-11-01")
        ok(e.sync(DAY3))
        assert e.username("S3") == user
        assert ops(ok(e.sync(DAY3)), "feide") == []
    finally:
        e.store.close()


def test_gate_counts_runs_applied_from_saved_plans(tmp_path: Path) -> None:
    """A plan-then-apply workflow sets the gate's baseline like sync does."""
    e = Env(tmp_path, small_sis())
    try:
        dry = e.sync(DAY1, dry_run=True)
        assert runner.apply_saved(e.cfg, e.store, Plan.loads(dry.plan.dumps())).exit_code == EXIT_OK
        assert e.store.runs.gate_baseline().active_persons == 12
        for pid in ("S1", "S2", "S3", "S4", "S5", "T1"):
            e.sis.remove_person(pid)
        assert e.sync(DAY2, dry_run=True).status == "refused"
        assert e.sync(DAY2).status == "refused"
    finally:
        e.store.close()


def test_approved_dry_run_refusal_is_the_next_baseline(env: Env) -> None:
    for pid in ("S1", "S2", "S3", "S4", "S5", "T1"):
        env.sis.remove_person(pid)
    age_runs(env.store)
    out = env.sync(DAY2, dry_run=True)
    assert out.status == "refused"
    assert runner.approve(env.cfg, env.store, out.run_id, "admin").exit_code == EXIT_OK
    assert ok(env.sync(DAY2)).plan.active_persons == 4  # S6, its guardian G3, T2, A1


def age_runs(store: StateStore) -> None:
    """Date every run so far back a day: runs in one second sort by their random id suffix."""
    with store.engine.begin() as c:
        c.execute(t.runs.update().values(started_at="2025-09-30T12:00:00+00:00"))


def test_purged_person_returns_with_the_same_username(env: Env) -> None:
    user, nin = env.username("S5"), env.sis.get_person("S5").nin
    env.sis.end_enrollments("S5", DAY1)
    ok(env.sync(DAY2))
    purge_day = "2026-04-01"  # 181 days after the last active day: retention (180) has passed
    out = ok(env.sync(purge_day))
    assert ops(out, CORE) == [("purge", "S5")]
    ident = env.store.identities.all()["S5"]
    assert (ident.status, ident.username, ident.nin, ident.display_name) == ("purged", user, None, None)
    assert env.store.identities.username_record(user)["person_id"] == "S5"
    assert nin in env.store.identities.view().person_by_nin
    # Back under a new SIS id with the same NIN: the historic base gives the old username.
    old = env.sis.get_person("S5")
    env.sis.remove_person("S5")
    env.sis.student("S5B", "SOR", old.given_name, old.family_name, nin=nin, start="2026-04-01")
    back = ok(env.sync("2026-04-02"))
    assert ops(back, CORE) == [("create", "S5B"), ("enable", "S5")]
    assert env.username("S5") == user and env.store.identities.all()["S5"].nin == nin
    assert env.persons("feide")["S5"]["attrs"]["uid"] == user


def test_employee_who_is_only_a_guardian_leaves_feide_but_stays_in_itslearning(env: Env) -> None:
    user = env.username("T2")
    env.sis.employments = [
        e._replace(end_date=DAY1) if e.person_id == "T2" else e for e in env.sis.employments
    ]
    env.sis.link_guardian("T2", "S5")
    out = ok(env.sync(DAY2))
    assert ("delete", "T2") in ops(out, "feide")
    (its,) = [c for c in out.plan.target("itslearning").changes if c.key == "T2" and c.kind == "person"]
    assert its.op == Op.UPDATE and its.attrs["institutionrole"] == "Guest"
    assert ops(out, CORE) == [("update", "T2")]  # still active, new roles: same identity, same username
    assert "T2" not in env.persons("feide") and env.persons("itslearning")["T2"]["attrs"]["userid"] == user


def test_awkward_names_go_through_every_target(tmp_path: Path) -> None:
    sis = small_sis()
    sis.student("W1", "NORD", '  Ola, "Jr" + \\ ', " <Nord>;=*(mann)# ")
    sis.student("W2", "NORD", "Zoe\u0308 🎉", "A\u030angstro\u0308m")
    sis.student("W3", "SOR", "Maximilian" * 15, "Fjellheimsbakken" * 10)
    e = Env(tmp_path, sis)
    try:
        out = ok(e.sync(DAY1))
        for tg in ("itslearning", "feide"):
            assert out.results[tg].rejected == out.results[tg].failed == 0
        users = {pid: e.username(pid) for pid in ("W1", "W2", "W3")}
        assert all(u.isascii() and len(u) <= 20 for u in users.values())
        assert e.persons("feide")["W1"]["attrs"]["sn"] == "<Nord>;=*(mann)#"
        ad = {
            c.key: c.attrs for c in out.plan.target("ad").changes if c.op == Op.CREATE and c.kind == "person"
        }
        assert all(len(ad[pid]["sAMAccountName"]) <= 20 for pid in users)
        assert ops(ok(e.sync(DAY1)), "feide") == []
    finally:
        e.store.close()


# -- a target or a run that cannot start is recorded, not left running --


def test_a_target_that_cannot_start_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    settings = {"itslearning": {"output_dir": str(tmp_path / "blocker" / "its")}}
    e = Env(tmp_path, small_sis(), target_settings=settings)
    try:
        out = e.sync(DAY1)
        assert out.results["itslearning"].status == "failed" and out.exit_code == runner.EXIT_TARGET_FAILED
        assert len(e.persons("feide")) == 9  # the other target goes on
        assert e.store.runs.get(out.run_id)["status"] == "failed"
    finally:
        e.store.close()


def test_a_run_that_cannot_build_its_connectors_is_recorded_as_failed(tmp_path: Path) -> None:
    # Microsoft 365 in apply mode whose client secret file is missing: the connector cannot be built.
    m365 = {"mode": "apply", "tenant_id": "t", "client_id": "c", "client_secret_file": "no-such-secret"}
    e = Env(tmp_path, small_sis(), target_settings={"m365": m365})
    try:
        out = e.sync(DAY1)
        assert (out.exit_code, out.status) == (EXIT_USAGE, "failed") and "no-such-secret" in out.message
        assert [r["status"] for r in e.store.runs.newest()] == ["failed"]
    finally:
        e.store.close()


def test_persons_without_a_nin_get_accounts_keyed_on_their_sis_id(tmp_path: Path) -> None:
    """PIFU and FINT allow persons without a NIN: the SIS id alone keys them, everywhere."""
    sis = small_sis().student("NN-S", "NORD", "Uten", "Nummer", nin=None, born="2013-02-03")
    sis.employee("NN-T", "NORD", "Lærer", "Utennummer", nin=None)
    e = Env(tmp_path, sis)
    try:
        ok(e.sync(DAY1))
        for target in ("itslearning", "feide"):
            assert {"NN-S", "NN-T"} <= set(e.persons(target)), target
        plan = e.sync(DAY1, dry_run=True).plan
        for target in ("ad", "m365"):
            assert {"NN-S", "NN-T"} <= {c.key for c in plan.target(target).changes if c.kind == "person"}
        assert "norEduPersonNIN" not in e.persons("feide")["NN-S"]["attrs"]
        ident = e.store.identities.all()
        assert ident["NN-S"].nin is None and ident["NN-T"].nin is None
        with e.store.engine.connect() as c:
            held = dict(c.execute(sa.select(t.usernames.c.username, t.usernames.c.person_id)).all())
        assert held[e.username("NN-S")] == "NN-S" and held[e.username("NN-T")] == "NN-T"
        # Gone from the SIS and back: the same username, found by the SIS id alone.
        before = e.username("NN-S")
        e.sis.remove_person("NN-S")
        ok(e.sync(DAY2))
        e.sis.student("NN-S", "NORD", "Uten", "Nummer", nin=None, born="2013-02-03")
        ok(e.sync(DAY3))
        assert e.username("NN-S") == before
    finally:
        e.store.close()
