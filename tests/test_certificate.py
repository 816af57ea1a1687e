"""The plan certificate: a run whose inputs did not change reuses the certified plan, and only then."""

from __future__ import annotations

import json
import pickle
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from provisioner.apply.result import TargetResult
from provisioner.core import certificate, memberships, patch, stored
from provisioner.core.model import Person
from provisioner.core.plan import CORE, Change, Op, Plan, TargetPlan
from provisioner.core.safety import planned_removals
from provisioner.core.stored import StoredChanges
from provisioner.run.runner import EXIT_OK
from provisioner.state import certificates
from provisioner.state.store import StateStore
from tests.sisbuilder import Sis, small_sis
from tests.test_pipeline import DAY1, DAY2, Env, ok


@pytest.fixture()
def env(tmp_path: Path):  # noqa: ANN201
    e = Env(tmp_path, small_sis())
    ok(e.sync(DAY1))
    yield e
    e.store.close()


def dry(env: Env, day: str = DAY1, **kw: object) -> Plan:
    out = env.sync(day, dry_run=True, **kw)
    assert out.exit_code == EXIT_OK, out.message
    assert out.plan is not None
    return out.plan


def same_changes(a: Plan, b: Plan) -> bool:
    return [(tp.target, tp.changes, tp.population) for tp in a.targets] == [
        (tp.target, tp.changes, tp.population) for tp in b.targets
    ]


def test_a_clean_apply_certifies_the_next_plan(env: Env) -> None:
    plan = dry(env)
    assert plan.basis == "certified"
    for name in (CORE, "itslearning", "feide"):
        assert plan.target(name).changes == ()
    # AD and Microsoft 365 are plan-only here: their changes come again, certified or not.
    assert plan.target("ad").changes and plan.target("m365").changes
    assert same_changes(plan, dry(env, full=True))


def test_a_quiet_sync_stays_certified_without_counting_the_populations(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Populations are counted for the targets that applied changes; a quiet run has none."""
    counted: list[int] = []
    real = env.store.objects.populations

    def populations() -> dict[str, int]:
        counted.append(1)
        return real()

    monkeypatch.setattr(env.store.objects, "populations", populations)
    quiet = env.sync(DAY1)
    ok(quiet)
    assert quiet.plan is not None and quiet.plan.basis == "certified" and counted == []
    assert same_changes(dry(env), dry(env, full=True))  # still certified, and right
    env.sis.update_person("S2", family_name="Hansen-Berg")
    ok(env.sync(DAY1))  # applies a change: the next plan's populations are counted
    assert counted == [1]
    assert same_changes(dry(env), dry(env, full=True))


def test_a_changed_name_patches_the_plan_any_other_row_means_a_full_plan(env: Env) -> None:
    env.sis.update_person("S2", family_name="Hansen-Berg")
    plan = dry(env)
    assert plan.basis == "incremental"  # provisioner/run/incremental.py
    assert [c.op for c in plan.target("itslearning").changes] == [Op.UPDATE]
    assert same_changes(plan, dry(env, full=True))
    again = dry(env)  # the plan just made is certified for the same inputs
    assert again.basis == "certified" and same_changes(again, plan)
    env.sis.end_enrollments("S3", "2025-09-30")  # a pupil leaves: patched too
    plan = dry(env)
    assert plan.basis == "incremental" and same_changes(plan, dry(env, full=True))
    env.sis.groups = [g._replace(name="6A nord") if g.group_id == "NORD-6A" else g for g in env.sis.groups]
    plan = dry(env)
    assert plan.basis == "full"  # a group row


def test_the_keys_beside_the_chunks_are_read_only_by_a_patch_and_unreadable_ones_mean_a_full_plan(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet run and an apply never need the keys of the certified plan's chunks (at Oslo
    size ~940,000 of them, all four targets pending: 0.4 s and ~60 MB per run); a patch does,
    and one it cannot read leaves the run to plan in full, not to fail."""
    read: list[int] = []
    real = stored.unpack_record
    monkeypatch.setattr(stored, "unpack_record", lambda body: read.append(1) or real(body))
    quiet = dry(env)
    assert quiet.basis == "certified" and read == []
    ad = quiet.target("ad").changes
    assert isinstance(ad, StoredChanges)
    again = pickle.loads(pickle.dumps(ad))  # as a worker gets it: the records still packed
    assert read == [] and again == ad
    assert again.chunk_keys == ad.chunk_keys and again.chunk_last == ad.chunk_last and read
    env.sis.update_person("S2", family_name="Hansen-Berg")
    read.clear()
    assert dry(env).basis == "incremental" and read  # a patch reads them
    with env.store.engine.begin() as c:  # damaged: not what pack_keys writes
        c.execute(
            sa.text("UPDATE plan_parts SET body = :b WHERE seq = 1 AND part LIKE 'chunk%'"), {"b": b"??"}
        )
    assert dry(env).basis == "certified"  # the same inputs: the keys are not read
    env.sis.update_person("S3", family_name="Nordmann-Berg")
    plan = dry(env)
    assert plan.basis == "full" and same_changes(plan, dry(env, full=True))


def test_another_day_config_or_state_means_a_full_plan(env: Env) -> None:
    assert dry(env, DAY2).basis == "full"  # timers and activity count whole days
    assert dry(env, DAY1).basis == "full"  # the certificate now holds DAY2's plan
    assert dry(env, DAY1).basis == "certified"
    env.configure(safety={"max_deletes": 7})
    assert dry(env).basis == "full"
    assert dry(env).basis == "certified"
    env.store.identities.reserve_usernames(["olanor9"], note="test")  # fewer free names: state version bumps
    assert dry(env).basis == "full"


def test_full_ignores_the_certificate_and_a_broken_one_is_replaced(env: Env) -> None:
    assert dry(env, full=True).basis == "full"
    env.store.meta.set("plan_certificate", "{not json")
    assert dry(env).basis == "full"
    assert dry(env).basis == "certified"


def test_removals_are_predicted_unless_a_purge_falls_due(env: Env, tmp_path: Path) -> None:
    """A leaver's objects deleted and identity disabled: the next plan is known (nothing
    to do), unless retention has passed for one no target holds any more (a purge)."""
    env.sis.end_enrollments("S3", "2025-09-30")
    out = ok(env.sync(DAY1))
    assert any(c.op is Op.DELETE for c in out.plan.target("itslearning").changes)
    assert any(c.op is Op.DISABLE for c in out.plan.target(CORE).changes)
    predicted = dry(env)
    assert predicted.basis == "certified"  # retention (180 days) has not passed for S3
    assert same_changes(predicted, dry(env, full=True))
    (tmp_path / "soon").mkdir()
    soon = Env(tmp_path / "soon", small_sis(), retention_days=0)
    try:
        ok(soon.sync(DAY1))
        soon.sis.end_enrollments("S3", "2025-09-30")
        ok(soon.sync(DAY1))
        full = dry(soon)
        assert full.basis == "full"  # no target holds S3 now: a purge falls due at once
        assert [(c.op, c.key) for c in full.target(CORE).changes] == [(Op.PURGE, "S3")]
        ok(soon.sync(DAY1))  # the purge applied: the next plan is known again
        assert dry(soon).basis == "certified"
    finally:
        soon.store.close()
    (tmp_path / "held").mkdir()
    held = Env(
        tmp_path / "held", small_sis(), retention_days=0, target_settings={"feide": {"remove_after_days": 30}}
    )
    try:
        ok(held.sync(DAY1))
        held.sis.end_enrollments("S3", "2025-09-30")
        ok(held.sync(DAY1))
        predicted = dry(held)
        assert predicted.basis == "certified"  # Feide keeps S3 for 30 days: the purge waits
        assert same_changes(predicted, dry(held, full=True))
    finally:
        held.store.close()


def test_a_removal_of_a_school_is_not_predicted() -> None:
    school = Change("feide", Op.DELETE, "orgunit", "NORD", "r")
    person = Change("feide", Op.DELETE, "person", "S1", "r", person_id="S1")
    group = Change("feide", Op.DELETE, "group", "G1", "r")
    assert certificate.removed_persons(TargetPlan("feide", (person, group))) == {"S1"}
    assert certificate.removed_persons(TargetPlan("feide", (person, school))) is None


def test_a_rejected_change_leaves_nothing_certified(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.errors import RejectedError
    from connectors.itslearning.connector import ItslearningConnector

    real = ItslearningConnector.accept

    def refuse_s7(self, change):  # noqa: ANN001, ANN202
        if change.key == "S7":
            raise RejectedError("refused by test")
        return real(self, change)

    monkeypatch.setattr(ItslearningConnector, "accept", refuse_s7)
    env.sis.student("S7", "NORD", "Siv", "Ny")
    out = env.sync(DAY1)
    assert out.status == "done_with_errors"
    assert env.store.certificates.load() is None
    plan = dry(env)
    assert plan.basis == "full"
    # ...and S7's group adds, which waited for the account (the store never recorded them)
    assert [(c.op, c.key) for c in plan.target("itslearning").changes] == [
        (Op.CREATE, "S7"),
        (Op.ADD_MEMBERS, "school:NORD:students"),
    ]


def test_pending_changes_of_plan_only_targets_are_certified_and_left_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AD and Microsoft 365 in plan mode keep their changes pending run after run: a quiet
    sync reuses them as stored, decoding none and writing none (issue 15's quiet run)."""
    monkeypatch.setattr(stored, "CHUNK", 2)  # several chunks per target even on a small SIS
    e = Env(tmp_path, small_sis())
    try:
        ok(e.sync(DAY1))
        parts = _parts(e)
        assert len(parts) > 2 and set(parts.values()) == {2}  # chunks of ad and m365, each with its keys

        def no_decoding(self: StoredChanges) -> tuple:
            raise AssertionError("a quiet run decoded stored changes")

        with monkeypatch.context() as m:
            m.setattr(StoredChanges, "decoded", no_decoding)
            out = ok(e.sync(DAY1))
            assert out.plan.basis == "certified"
            assert out.plan.summary()["ad"]["create"] > 0
        assert _parts(e) == parts  # named again, not rewritten
        assert same_changes(dry(e), dry(e, full=True))
        # One changed name: the patch replaces the chunk with that person's changes in each
        # plan-only target; only those are written, the rest are the chunks already stored.
        e.sis.update_person("S2", family_name="Hansen-Berg")
        out = ok(e.sync(DAY1))
        assert out.plan.basis == "incremental"
        new = set(_parts(e)) - set(parts)
        assert 1 <= len(new) <= 2 and len(set(parts) - set(_parts(e))) == len(new)
        assert same_changes(dry(e), dry(e, full=True))
    finally:
        e.store.close()


def test_a_certified_plan_keeps_each_chunks_last_change_beside_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a patch's binary search reads instead of decoding chunks (provisioner.core.patch)."""
    monkeypatch.setattr(stored, "CHUNK", 2)
    e = Env(tmp_path, small_sis())
    try:
        ok(e.sync(DAY1))
        cert = e.store.certificates.load()
        assert cert is not None
        for name in ("ad", "m365"):
            changes = cert.plan.target(name).changes
            assert isinstance(changes, StoredChanges) and len(changes.chunks) > 2
            lasts = [stored.last_of(changes.decode_chunks(i, i)[-1]) for i in range(len(changes.chunks))]
            assert list(changes.chunk_last) == lasts
    finally:
        e.store.close()


def test_chunks_an_earlier_version_stored_without_their_last_change_serve_and_are_stored_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an upgrade the certified plan's chunks ("chunk2-", no last change) are read as
    they are; the next plan stored names them anew, each with its last change."""
    monkeypatch.setattr(stored, "CHUNK", 2)
    e = Env(tmp_path, small_sis())
    try:
        with monkeypatch.context() as m:  # the earlier version
            m.setattr(certificates, "_CHUNK", "chunk2-")
            m.setattr(certificates, "pack_keys", lambda keys, last=None: stored.pack_keys(keys))
            ok(e.sync(DAY1))
        old = e.store.certificates.load()
        assert old is not None and set(old.plan.target("ad").changes.chunk_last) == {None}
        assert dry(e).basis == "certified"
        e.sis.update_person("S2", family_name="Hansen-Berg")
        out = ok(e.sync(DAY1))
        assert out.plan is not None and out.plan.basis == "incremental"  # a patch on the old chunks
        cert = e.store.certificates.load()
        assert cert is not None
        for name in ("ad", "m365"):
            changes = cert.plan.target(name).changes
            lasts = [stored.last_of(changes.decode_chunks(i, i)[-1]) for i in range(len(changes.chunks))]
            assert list(changes.chunk_last) == lasts
        assert set(_parts(e)) and all(p.startswith("chunk3-") for p in _parts(e))  # the old ones gone
        assert same_changes(dry(e), dry(e, full=True))
    finally:
        e.store.close()


def test_a_chunks_last_change_is_read_back_when_it_is_one_and_else_left_unknown() -> None:
    keys = frozenset({"S1", "G1"})
    assert stored.unpack_record(stored.pack_keys(keys, ("create", "person", "S1"))) == (
        keys,
        ("create", "person", "S1"),
    )
    assert stored.unpack_record(stored.pack_keys(keys)) == (keys, None)  # as an earlier version stored it
    for last in (["create", "person"], ["frobnicate", "person", "S1"], ["create", "person", 7], "S1", None):
        body = zlib.compress(json.dumps({"keys": ["S1"], "last": last}).encode())
        assert stored.unpack_record(body) == (frozenset({"S1"}), None)  # found by decoding instead


def test_a_certificate_whose_stored_changes_are_gone_is_not_used(env: Env) -> None:
    assert dry(env).basis == "certified"
    with env.store.engine.begin() as c:
        c.execute(sa.text("DELETE FROM plan_parts"))
    assert env.store.certificates.load() is None
    assert dry(env).basis == "full"
    assert dry(env).basis == "certified"


def test_stored_changes_round_trip_and_count_what_they_remove() -> None:
    changes = (
        Change("ad", Op.CREATE, "person", "S1", "new", attrs={"cn": "Å\udcff"}),
        Change("ad", Op.DELETE, "person", "S2", "gone"),
        Change("ad", Op.DISABLE, "person", "S2", "gone"),
        Change(
            "ad", Op.REMOVE_MEMBERS, "group", "G1", "left", members=(("S2", "student"), ("S3", "student"))
        ),
    )
    s = stored.encode(changes)
    assert len(s) == 4 and s.op_counts == {"create": 1, "delete": 1, "disable": 1, "remove_members": 1}
    assert s.destructive == {("person", "S2")} and s.member_removals == 2
    assert planned_removals(s) == planned_removals(changes)
    assert s == changes and list(s) == list(changes) and s[1:3] == changes[1:3]
    keys = tuple(stored.pack_keys(k) for k in s.chunk_keys)  # as an earlier version stored them
    again = stored.from_stored(stored.meta_of(s), s.chunks, keys)
    assert again == changes and again.chunk_keys == s.chunk_keys == (frozenset({"S1", "S2", "G1"}),)
    assert s.chunk_last == (("remove_members", "group", "G1"),) and again.chunk_last == (None,)
    records = tuple(stored.pack_keys(k, last) for k, last in zip(s.chunk_keys, s.chunk_last))
    kept = stored.from_stored(stored.meta_of(s), s.chunks, records)
    assert kept.chunk_last == s.chunk_last and kept == changes
    with pytest.raises(ValueError, match="1 chunks stored, 2 described"):
        stored.from_stored(stored.meta_of(s), s.chunks, records * 2)
    with pytest.raises(TypeError):  # the keys of persons alone, as an earlier version stored them
        stored.unpack_record(zlib.compress(b'["S1", "S2"]'))
    assert TargetPlan("ad", s).counts() == TargetPlan("ad", changes).counts()
    broken = stored.StoredChanges(s.chunks, 5, s.op_counts, s.destructive, 2)
    with pytest.raises(ValueError, match="not the 5 recorded"):
        broken.decoded()


def test_the_first_stored_changes_are_read_without_decoding_the_rest() -> None:
    """`bas plan` shows a few changes of each target: a plan-only target's 100,000-odd
    pending ones are not all decoded for that (a chunk that is never read may be anything)."""
    changes = tuple(
        Change("ad", Op.CREATE, "person", f"S{n:04d}", "new") for n in range(2 * stored.CHUNK + 5)
    )
    s = stored.encode(changes)
    unread = stored.StoredChanges(
        (s.chunks[0], b"never read", b"never read"), s.size, s.op_counts, s.destructive, 0
    )
    assert unread[:3] == changes[:3] and unread[0 : stored.CHUNK] == changes[: stored.CHUNK]
    assert unread[:0] == ()
    assert s[: stored.CHUNK + 2] == changes[: stored.CHUNK + 2] and s[:100_000] == changes
    assert s[1:4] == changes[1:4] and s[-2:] == changes[-2:]  # other slices decode them all, as before
    with pytest.raises(ValueError, match="does not decompress"):
        unread[: stored.CHUNK + 1]


def _parts(e: Env) -> dict[str, int]:
    """The stored changes' parts and chunks (the fingerprints of persons, groups, affiliations aside)."""
    q = (
        "SELECT part, count(*) FROM plan_parts WHERE part NOT LIKE 'persons-%'"
        " AND part NOT LIKE 'groups-%' AND part NOT LIKE 'affils-%' AND part NOT LIKE 'print-%' GROUP BY part"
    )
    with e.store.engine.connect() as c:
        return dict(c.execute(sa.text(q)).all())


def test_a_source_drop_is_refused_with_a_certificate_in_place(tmp_path: Path) -> None:
    sis = Sis().school("NORD", "974000001", "NORDBY")
    for i in range(10):
        sis.student(f"S{i}", "NORD", "Elev", f"Nummer{i}")
    e = Env(tmp_path, sis)
    try:
        ok(e.sync(DAY1))
        assert dry(e).basis == "certified"
        for i in range(5):
            e.sis.remove_person(f"S{i}")
        out = e.sync(DAY1, dry_run=True)
        assert out.status == "refused"
    finally:
        e.store.close()


# -- predict_after_apply, table-driven ---------------------------------------------------------------------


def _plan(*tps: TargetPlan) -> Plan:
    return Plan("r1", "t", DAY1, {}, tps, source_digests={"persons": "x"})


def _c(target: str, op: Op = Op.CREATE) -> Change:
    return Change(target, op, "person", "P1", "why")


RES_OK = {"its": TargetResult("its", "applied", ok=1), CORE: TargetResult(CORE, "applied", ok=1)}


@pytest.mark.parametrize(
    ("tps", "results", "expect"),
    [
        # applied in full: nothing left, population from the store
        ((TargetPlan("its", (_c("its"),), 0),), RES_OK, [("its", 0, 5)]),
        # plan-only and held targets keep their changes and population
        ((TargetPlan("ad", (_c("ad"),), 2, dry_run=True),), {}, [("ad", 1, 2)]),
        # a rejected object, a failed target, or a partial apply: not predictable
        ((TargetPlan("its", (_c("its"),), 0),), {"its": TargetResult("its", "applied", rejected=1)}, None),
        ((TargetPlan("its", (_c("its"),), 0),), {"its": TargetResult("its", "failed")}, None),
        ((TargetPlan("its", (_c("its"), _c("its")), 0),), RES_OK, None),
        # removals may set off a purge (the default: it may)
        ((TargetPlan("its", (_c("its", Op.DELETE),), 0),), RES_OK, None),
        ((TargetPlan(CORE, (_c(CORE, Op.DISABLE),), 0),), RES_OK, None),
    ],
)
def test_predict_after_apply(tps: tuple, results: dict, expect: list | None) -> None:
    got = certificate.predict_after_apply(_plan(*tps), results, lambda: {"its": 5, CORE: 9})
    if expect is None:
        assert got is None
    else:
        assert [(tp.target, len(tp.changes), tp.population) for tp in got.targets] == expect


@pytest.mark.parametrize(
    ("changes", "due", "expect"),
    [
        ((_c("its", Op.DELETE),), False, {"P1"}),  # nothing follows: the next plan is known
        ((_c("its", Op.DELETE),), True, None),  # a purge falls due
        ((Change("its", Op.DELETE, "group", "G1", "why"),), True, set()),  # no person removed
        ((Change("its", Op.DELETE, "orgunit", "NORD", "why"),), False, None),  # a school: never
    ],
)
def test_predict_after_removals_asks_whether_a_purge_falls_due(
    changes: tuple, due: bool, expect: set[str] | None
) -> None:
    asked: list[frozenset[str]] = []

    def purges_due(persons: frozenset[str]) -> bool:
        asked.append(persons)
        return due and bool(persons)

    plan = _plan(TargetPlan("its", changes, 0))
    got = certificate.predict_after_apply(plan, RES_OK, lambda: {"its": 5}, purges_due)
    if expect is None:
        assert got is None
    else:
        assert got is not None and asked == [expect]
        assert [(tp.target, len(tp.changes), tp.population) for tp in got.targets] == [("its", 0, 5)]


def test_predict_needs_source_digests() -> None:
    plan = Plan("r1", "t", DAY1, {}, (TargetPlan("its", (), 0),))
    assert certificate.predict_after_apply(plan, {}, dict) is None


def test_group_adds_wait_for_a_member_whose_create_failed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store must not record S7 as a member of 6A while S7's account does not exist."""
    from connectors.errors import RejectedError
    from connectors.itslearning.connector import ItslearningConnector

    real = ItslearningConnector.accept

    def refuse_s7(self, change):  # noqa: ANN001, ANN202
        if change.key == "S7" and change.op is Op.CREATE:
            raise RejectedError("refused by test")
        return real(self, change)

    monkeypatch.setattr(ItslearningConnector, "accept", refuse_s7)
    env.sis.student("S7", "NORD", "Siv", "Ny")
    env.sis.student("S8", "NORD", "Per", "Ny")
    g = next(m for m in env.sis.memberships if m.group_id == "NORD-6A")
    env.sis.memberships += [g._replace(person_id="S7"), g._replace(person_id="S8")]
    out = env.sync(DAY1)
    assert out.status == "done_with_errors"
    members = {m[0] for m in env.objects("itslearning")["NORD-6A"]["members"]}
    assert "S8" in members and "S7" not in members
    monkeypatch.setattr(ItslearningConnector, "accept", real)
    again = ok(env.sync(DAY1))
    its = [(c.op, c.key, c.members) for c in again.plan.target("itslearning").changes]
    assert (Op.CREATE, "S7", ()) in its and (Op.ADD_MEMBERS, "NORD-6A", (("S7", "01"),)) in its
    assert "S7" in {m[0] for m in env.objects("itslearning")["NORD-6A"]["members"]}


def test_a_group_add_of_only_failed_members_is_skipped(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.errors import RejectedError
    from connectors.itslearning.connector import ItslearningConnector

    real = ItslearningConnector.accept

    def refuse_s7(self, change):  # noqa: ANN001, ANN202
        if change.key == "S7" and change.op is Op.CREATE:
            raise RejectedError("refused by test")
        return real(self, change)

    monkeypatch.setattr(ItslearningConnector, "accept", refuse_s7)
    env.sis.student("S7", "NORD", "Siv", "Ny")
    g = next(m for m in env.sis.memberships if m.group_id == "NORD-6A")
    env.sis.memberships.append(g._replace(person_id="S7"))
    out = env.sync(DAY1)
    r = out.results["itslearning"]
    assert (r.rejected, r.skipped) == (1, 2)  # 6A and the school's all-students group
    rows = [x for x in env.changelog(out.run_id) if x["target"] == "itslearning"]
    assert {(x["op"], x["key"], x["result"]) for x in rows} >= {
        ("create", "S7", "rejected"),
        ("add_members", "NORD-6A", "skipped"),
    }


def test_settings_that_plan_nothing_keep_the_certificate_and_a_held_plan_approvable(env: Env) -> None:
    """Logging and the web console's login and roles change no plan: editing them recomputes nothing."""
    assert dry(env).basis == "certified"
    before = certificate.config_digest(env.cfg)
    env.cfg = env.cfg.model_copy(
        update={
            "logging": env.cfg.logging.model_copy(update={"level": "debug"}),
            "web": env.cfg.web.model_copy(update={"idle_minutes": 15}),
        }
    )
    assert certificate.config_digest(env.cfg) == before
    assert dry(env).basis == "certified"


def test_person_fingerprints_are_stored_in_pieces_and_a_patch_writes_only_what_changed(
    store: StateStore,
) -> None:
    """A patched run's fingerprints differ in a piece or two: only those pieces are written,
    also when a joiner's id sorts first (pieces are cut where the ids say, not by position),
    the certificate keeps the fingerprints of its source, and dropping it keeps them too."""
    rows = [
        Person(f"P{i:05d}", None, "Ola", None, "Nordmann", "2012-03-04", None, None) for i in range(9_000)
    ]
    first = patch.PersonPrints.of(rows)
    assert first is not None
    store.certificates.save_prints({"persons": "one"}, first)
    assert store.certificates.prints({"persons": "one"}) == first
    written = _all_parts(store)
    pieces = len(certificates._cuts(first.ids))
    assert pieces >= 2
    assert len(written) == 1 + 3 * pieces  # the index; ids, birth dates and rows of each piece
    rows[5_000] = rows[5_000]._replace(given_name="Kari")
    found = patch.changed_persons(first, rows)
    assert found is not None and found[0] == {"P05000"}
    store.certificates.save_prints({"persons": "two"}, found[1])
    assert store.certificates.prints({"persons": "two"}) == found[1] == patch.PersonPrints.of(rows)
    assert len(_all_parts(store) - written) == 2  # its index and the one piece of rows that changed
    written = _all_parts(store)
    joiner = Person("A0000", None, "Nora", None, "Nykommer", "2016-03-14", None, None)
    joined = patch.changed_persons(found[1], [joiner, *rows])
    assert joined is not None and joined.joined == {"A0000"}
    store.certificates.save_prints({"persons": "joined"}, joined.prints)
    assert store.certificates.prints({"persons": "joined"}) == joined.prints
    assert len(_all_parts(store) - written) == 1 + 3  # its index; the first piece's ids, birth dates, rows
    plan = Plan(run_id="r", created_at="t", as_of=DAY1, cookie={}, targets=())
    store.certificates.save(certificate.Certificate("key", {"persons": "two"}, plan))
    assert store.certificates.prints({"persons": "one"}) is None  # of a source no certificate is of
    assert store.certificates.prints({"persons": "joined"}) is None
    assert store.certificates.prints({"persons": "two"}) == found[1]
    store.certificates.save(None)
    assert store.certificates.prints({"persons": "two"}) == found[1]
    assert store.certificates.prints({"persons": "three"}) is None


def test_group_fingerprints_of_a_new_group_write_its_piece_and_bucket_only(store: StateStore) -> None:
    """A group that comes (a joiner's new class) changes one piece of ids and fingerprints and
    one bucket of rows, wherever its id sorts; the rest are the pieces already stored."""
    rows = [(f"G{g:05d}", f"P{g * 3 + i:06d}", "student") for g in range(12_000) for i in range(3)]
    first = memberships.GroupPrints.of(rows)
    assert first is not None
    store.certificates.save_group_prints({"memberships": "one"}, first)
    assert store.certificates.group_prints({"memberships": "one"}) == first
    written = _all_parts(store)
    assert len(certificates._cuts(first.ids)) >= 2
    found = memberships.changed_groups(first, [("A0001", "P999999", "student"), *rows])
    assert found is not None and found.groups == {"A0001"}
    store.certificates.save_group_prints({"memberships": "two"}, found.prints)
    assert store.certificates.group_prints({"memberships": "two"}) == found.prints
    assert len(_all_parts(store) - written) == 1 + 2 + 1  # its index; a piece of ids and prints; a bucket


@pytest.mark.parametrize("at", [0, 1, 4_999, 10_000])
def test_pieces_are_cut_where_the_ids_say(at: int) -> None:
    """An id that comes changes only the piece it falls in: every other piece holds the same
    ids as before (a piece ends after an id whose CRC says so, or after _MAX_PIECE ids)."""
    ids = [f"P{i:06d}" for i in range(0, 20_000, 2)]
    now = sorted([*ids, f"P{2 * at + 1:06d}"])

    def pieces(of: list[str]) -> list[tuple[str, ...]]:
        return [tuple(of[a:b]) for a, b in certificates._cuts(of)]

    before, after = pieces(ids), pieces(now)
    assert [i for p in after for i in p] == now and all(after)
    assert len(set(after) - set(before)) == 1
    assert len(set(before) - set(after)) == 1
    assert certificates._cuts([]) == []


def test_an_id_with_a_lone_surrogate_is_cut_as_its_bytes_say(store: StateStore) -> None:
    """A lone surrogate read from a broken export: the pieces are cut, kept and read back."""
    ids = [f"P{i:06d}" for i in range(0, 20_000, 2)]
    now = sorted([*ids, "P004000\udcff"])
    assert [i for a, b in certificates._cuts(now) for i in now[a:b]] == now
    changed = {tuple(now[a:b]) for a, b in certificates._cuts(now)} - {
        tuple(ids[a:b]) for a, b in certificates._cuts(ids)
    }
    assert len(changed) == 1
    rows = [Person(i, None, "Ola", None, "Nordmann", "2012-03-04", None, None) for i in now]
    prints = patch.PersonPrints.of(rows)
    assert prints is not None
    store.certificates.save_prints({"persons": "x"}, prints)
    assert store.certificates.prints({"persons": "x"}) == prints


def test_a_piece_ends_after_max_piece_ids_when_no_id_cuts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certificates, "_CUT_MASK", 0xFFFFFFFF)  # no CRC has every bit clear but 0
    ids = [f"P{i:06d}" for i in range(2 * certificates._MAX_PIECE + 5)]
    assert [b - a for a, b in certificates._cuts(ids)] == [certificates._MAX_PIECE] * 2 + [5]


def _all_parts(store: StateStore) -> set[str]:
    with store.engine.connect() as c:
        return {p for (p,) in c.execute(sa.text("SELECT DISTINCT part FROM plan_parts"))}


@pytest.mark.parametrize(
    ("ids", "kept"),
    [
        ([], True),
        (["P1"], True),
        (["P1", "P2", "P3"], True),
        (["P1\x00"], False),
        (["P1", "P\x002", "P3"], False),
        (["\x00", "P2"], False),
    ],
)
def test_fingerprints_are_kept_unless_an_id_holds_nul(store: StateStore, ids: list[str], kept: bool) -> None:
    """Ids are stored NUL-joined: one holding NUL would split in two when read back, so none are kept."""
    rows = [Person(i, None, "Ola", None, "Nordmann", "2012-03-04", None, None) for i in ids]
    prints = patch.PersonPrints.of(rows)
    assert prints is not None
    store.certificates.save_prints({"persons": "x"}, prints)
    assert store.certificates.prints({"persons": "x"}) == (prints if kept else None)
    assert bool(_all_parts(store)) == kept  # not stored at all, not only unreadable


def test_membership_fingerprints_are_stored_in_pieces_and_carried_to_a_source_with_the_same_rows(
    store: StateStore,
) -> None:
    """A run that changed a group writes its bucket and the index; one that changed another
    table (a patched name) names the same pieces under its own source; the frozen persons
    and groups come back as they were (a lone surrogate too), and ids with NUL are not kept."""
    rows = [(f"G{g:03d}", f"P{g * 10 + i:05d}", "student") for g in range(300) for i in range(5)]
    first = memberships.GroupPrints.of(rows)
    assert first is not None
    first = first.frozen({"P00003", "P\udcff"}, {"G001"})
    store.certificates.save_group_prints({"memberships": "one"}, first)
    assert store.certificates.group_prints({"memberships": "one"}) == first
    written = _all_parts(store)
    pieces = len(certificates._cuts(first.ids))  # of ids, and of their fingerprints
    assert len(written) == 1 + 2 * pieces + memberships.BUCKETS  # the index, the pieces, the buckets
    found = memberships.changed_groups(first, [*rows, ("G007", "P99999", "student")])
    assert found is not None and found.groups == {"G007"}
    store.certificates.save_group_prints({"memberships": "two"}, found.prints)
    assert store.certificates.group_prints({"memberships": "two"}) == found.prints
    assert len(_all_parts(store) - written) == 3  # its index, a piece of fingerprints and one bucket
    store.certificates.carry_prints(
        {"memberships": "two"}, {"memberships": "two", "persons": "x"}, which="groups"
    )
    assert store.certificates.group_prints({"memberships": "two", "persons": "x"}) == found.prints
    store.certificates.carry_prints(
        {"memberships": "two"}, {"memberships": "three"}, which="persons"
    )  # no persons'
    assert store.certificates.prints({"memberships": "three"}) is None
    plan = Plan(run_id="r", created_at="t", as_of=DAY1, cookie={}, targets=())
    store.certificates.save(certificate.Certificate("key", {"memberships": "two", "persons": "x"}, plan))
    assert store.certificates.group_prints({"memberships": "two"}) is None  # of a source no certificate is of
    assert store.certificates.group_prints({"memberships": "two", "persons": "x"}) == found.prints
    nul = memberships.GroupPrints.of([("G\x001", "P1", "student")])
    assert nul is not None
    store.certificates.save_group_prints({"memberships": "nul"}, nul)
    assert store.certificates.group_prints({"memberships": "nul"}) is None


def test_fingerprints_an_earlier_version_kept_under_the_same_source_are_replaced(store: StateStore) -> None:
    """An index of one piece per key (an earlier version's) is unreadable now: saving the same
    source's fingerprints replaces it, rather than keep it and patch nothing until the SIS changes."""
    persons = patch.PersonPrints.of([Person("P1", None, "Ola", None, "Nordmann", "2012-03-04", None, None)])
    groups = memberships.GroupPrints.of([("G1", "P1", "student")])
    assert persons is not None and groups is not None
    source = {"persons": "one", "memberships": "one"}
    old = {"ids": "print-a", "ident": "print-b", "whole": ["print-c"], "prints": "print-d", "buckets": []}
    with store.engine.begin() as c:
        for ref in (certificates._prints_ref(source), certificates._group_prints_ref(source, "groups")):
            c.execute(
                sa.text("INSERT INTO plan_parts (part, seq, body) VALUES (:p, 0, :b)"),
                {"p": ref, "b": json.dumps(old).encode()},
            )
    assert store.certificates.prints(source) is None
    assert store.certificates.group_prints(source) is None
    store.certificates.save_prints(source, persons)
    store.certificates.save_group_prints(source, groups)
    assert store.certificates.prints(source) == persons
    assert store.certificates.group_prints(source) == groups
