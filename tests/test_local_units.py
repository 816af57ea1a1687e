"""Local persons and locks, the pure parts: the end-date rule, the record checks, the merge
into the snapshot, the CSV file, and the lock planning (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.core.local import (
    LocalPerson,
    changed_values,
    check_end,
    check_values,
    local_digest,
    merge,
)
from provisioner.core.local_csv import read_local_csv, write_local_csv
from provisioner.core.locks import ALL_TARGETS, Lock, locked_in, plan_locks, released_in
from provisioner.core.plan import Change, Op
from provisioner.core.rows import IndexRow
from provisioner.core.states import ObjectStatus
from tests.sisbuilder import small_sis, synthetic_nin

TODAY = "2026-11-30"


def _lp(n: int = 1, **kw: object) -> LocalPerson:
    values: dict = {
        "given_name": "Vera",
        "middle_name": None,
        "family_name": "Vikar",
        "nin": None,
        "protected": False,
        "school_id": "NORD",
        "role": "teacher",
        "start_date": "2026-11-01",
        "end_date": "2027-06-20",
    }
    values.update(kw)
    return LocalPerson(n, **values)


# -- the end-date rule and the record checks ----------------------------------------------


@pytest.mark.parametrize(
    ("end", "start", "problem"),
    [
        ("2026-11-30", None, None),  # today is fine
        ("2027-12-01", None, None),  # 366 days ahead
        ("2027-12-02", None, "more than 366 days ahead"),
        ("2026-11-29", None, "in the past"),
        ("2026-13-01", None, "not a day"),
        ("2026-12-10", "2026-12-20", "before the start date"),
        ("", None, "not a day"),
    ],
)
def test_end_date_rule(end: str, start: str | None, problem: str | None) -> None:
    why = check_end(end, TODAY, start=start)
    assert (why is None) if problem is None else (why is not None and problem in why)


@pytest.mark.parametrize(
    ("values", "before", "problem"),
    [
        ({}, None, None),
        ({"role": "student"}, None, "role 'student' is not one of teacher, staff, leader"),
        ({"given_name": " "}, None, "given_name is required"),
        ({"family_name": "=HYPERLINK(1)"}, None, "cannot start with '='"),
        ({"nin": "12345678901"}, None, "NIN is not valid"),
        ({"nin": synthetic_nin("1980-05-06")}, None, None),
        ({"end_date": None}, None, "end date is required"),
        ({"end_date": "2020-01-01"}, None, "in the past"),
        ({"start_date": "tomorrow"}, None, "start date 'tomorrow'"),
        # ending sooner may name a day in the past (from the start date on) ...
        ({"end_date": "2026-11-15"}, _lp(), None),
        ({"end_date": "2026-10-15"}, _lp(), "before the start date"),
        # ... extending follows the end-date rule
        ({"end_date": "2028-01-01"}, _lp(), "more than 366 days ahead"),
        ({"given_name": "Vera Marie"}, _lp(end_date="2026-11-20"), None),  # an ended person can be renamed
    ],
)
def test_check_values(values: dict, before: LocalPerson | None, problem: str | None) -> None:
    full = values if before else {**_lp().values(), "end_date": "2027-01-31", **values}
    why = check_values(full, TODAY, before)
    assert (why is None) if problem is None else (why is not None and problem in why), why


def test_changed_values_keeps_only_differences() -> None:
    assert changed_values(_lp(), {"given_name": "Vera", "role": "staff", "nosuch": 1}) == {"role": "staff"}


# -- the merge ----------------------------------------------------------------------------


def test_merge_adds_person_and_employment_with_local_ids_and_keeps_the_sis_digests() -> None:
    snap = small_sis().snapshot()
    snap = type(snap)(**{**snap.__dict__, "digests": {"persons": "abc"}})
    merged, errors = merge(snap, [_lp(1), _lp(2, role="staff", school_id="SOR")])
    assert errors == ()
    added = merged.persons[len(snap.persons) :]
    assert [p.person_id for p in added] == ["local:1", "local:2"]
    jobs = merged.employments[len(snap.employments) :]
    assert [(e.employment_id, e.person_id, e.school_id, e.role, e.end_date) for e in jobs] == [
        ("local:1", "local:1", "NORD", "teacher", "2027-06-20"),
        ("local:2", "local:2", "SOR", "staff", "2027-06-20"),
    ]
    assert merged.digests == {"persons": "abc"}
    assert snap.counts()["persons"] + 2 == merged.counts()["persons"]


@pytest.mark.parametrize(
    ("local", "sis_change", "error"),
    [
        (_lp(nin="NIN", protected=True), None, None),  # protected: the NIN stays out, no clash
        (_lp(nin="NIN"), None, "a SIS person has the same NIN"),
        (_lp(school_id="GONE"), None, "school 'GONE' is not in the source"),
        (_lp(1), "id", "the SIS has a person with the id local:1"),
    ],
)
def test_merge_refusals_name_the_local_record(
    local: LocalPerson, sis_change: str | None, error: str | None
) -> None:
    sis = small_sis()
    nin = sis.persons[0].nin
    if local.nin == "NIN":
        local = LocalPerson(**{**local.values(), "local_id": local.local_id, "nin": nin})
    if sis_change == "id":
        sis.persons[0] = sis.persons[0]._replace(person_id="local:1")
    merged, errors = merge(sis.snapshot(), [local])
    if error is None:
        assert errors == ()
        person = merged.persons[-1]
        assert person.person_id == "local:1" and person.nin is None  # never sent anywhere
        return
    assert len(errors) == 1 and errors[0].record == "local person local:1" and error in errors[0].message
    assert len(merged.persons) == len(sis.persons)


def test_local_digest_changes_with_any_record_or_lock() -> None:
    base = local_digest([_lp()], [])
    assert local_digest([_lp()], []) == base
    assert local_digest([_lp(end_date="2027-06-19")], []) != base
    assert local_digest([_lp()], [{"person_id": "P1", "target": "*"}]) != base


# -- the CSV file -------------------------------------------------------------------------


def test_csv_round_trip_neutralises_formulas_and_masks_nins(tmp_path: Path) -> None:
    nin = synthetic_nin("1980-05-06")
    persons = [_lp(1, ref="v1", nin=nin, family_name="-Vikar", protected=True)]
    text = write_local_csv(persons)
    assert nin not in text and "'-Vikar" in text and ";yes;" in text
    f = tmp_path / "list.csv"
    f.write_text(text, encoding="utf-8")
    rows = read_local_csv(f)
    assert len(rows) == 1
    line, values = rows[0]
    assert line == 2 and values["family_name"] == "-Vikar" and values["protected"] is True
    assert "nin" not in values  # masked: left as it is
    assert values["school_id"] == "NORD" and values["end_date"] == "2027-06-20"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ref,given_name\nx,Vera\n", "missing column(s) family_name, school, role, end"),
        ("ref,given_name,family_name,school,role,end,shoe\n", "unknown column(s) shoe"),
        ("ref,given_name,family_name,school,role,end\n,A,B,NORD,teacher,2027-01-01\n", "ref is empty"),
        (
            "ref,given_name,family_name,school,role,end,protected\nx,A,B,N,teacher,2027-01-01,kanskje\n",
            "protected",
        ),
        ("", "no header row"),
    ],
)
def test_csv_problems_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="p.csv") as exc:
        read_local_csv(f)
    assert problem in str(exc.value)


def test_csv_reads_semicolons_windows_1252_and_powershell_type_line(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    text = (
        '#TYPE System.Object\r\n"ref";"given_name";"family_name";"school";"role";"end"\r\n'
        '"v1";"Åse";"Ødegård";"NORD";"Staff";"2027-01-01"\r\n'
    )
    f.write_bytes(text.encode("cp1252"))
    [(line, values)] = read_local_csv(f)
    assert values == {
        "ref": "v1",
        "given_name": "Åse",
        "family_name": "Ødegård",
        "school_id": "NORD",
        "role": "staff",
        "end_date": "2027-01-01",
    }


# -- locks ---------------------------------------------------------------------------------


def _lock(pid: str = "P1", target: str = ALL_TARGETS, until: str | None = None, **kw: object) -> Lock:
    return Lock(pid, target, "misuse", "ola", until, "2026-11-01T10:00:00", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lock", "target", "as_of", "locked"),
    [
        (_lock(), "ad", TODAY, True),
        (_lock(target="m365"), "ad", TODAY, False),
        (_lock(target="m365"), "m365", TODAY, True),
        (_lock(until="2026-12-24"), "ad", "2026-12-24", True),  # the last day is locked
        (_lock(until="2026-12-24"), "ad", "2026-12-25", False),
        (_lock(released_at="2026-11-20T08:00:00", released_by="kari"), "ad", TODAY, False),
    ],
)
def test_locked_in(lock: Lock, target: str, as_of: str, locked: bool) -> None:
    assert (lock.person_id in locked_in([lock], target, as_of)) is locked


def test_lock_text_and_release_words() -> None:
    assert _lock(until="2026-12-24").text() == "locked by ola until 2026-12-24: misuse"
    assert released_in([_lock(until="2026-12-24")], "ad", "2026-12-25") == {
        "P1": ("2026-12-24", "lock ended after 2026-12-24 (locked by ola until 2026-12-24: misuse)")
    }
    gone = _lock(released_at="2026-11-20T08:00:00", released_by="kari")
    assert released_in([gone], "ad", TODAY)["P1"][1].startswith("unlocked by kari on 2026-11-20")


def _row(status: ObjectStatus, since: str = "2026-11-01", pid: str = "P1") -> IndexRow:
    return IndexRow("person", f"guid-{pid}", status, since, "d", pid, f"u{pid}")


def _c(
    op: Op, pid: str = "P1", kind: str = "person", reason: str = "active in SIS: teacher at NORD"
) -> Change:
    return Change(target="ad", op=op, kind=kind, key=pid, person_id=pid, username=f"u{pid}", reason=reason)


LOCKED = {"P1": "locked by ola: misuse"}
WHY = "active in SIS: teacher at NORD"
ON, OFF, GONE = ObjectStatus.ACTIVE, ObjectStatus.DISABLED, ObjectStatus.DELETED
UNLOCKED = {"P1": ("2026-11-20", "unlocked by kari on 2026-11-20")}


@pytest.mark.parametrize(
    ("name", "changes", "index", "locked", "released", "want"),
    [
        ("active account: disabled with the lock's reason", [], {"P1": _row(ON)}, LOCKED, {},
         [("disable", "P1", LOCKED["P1"])]),
        ("an update still goes, then the disable", [_c(Op.UPDATE)], {"P1": _row(ON)}, LOCKED, {},
         [("update", "P1", WHY), ("disable", "P1", LOCKED["P1"])]),
        ("disabled account: the lifecycle's enable is held back", [_c(Op.ENABLE), _c(Op.UPDATE)],
         {"P1": _row(OFF)}, LOCKED, {}, [("update", "P1", WHY)]),
        ("parked in the disabled OU: no move out", [_c(Op.ENABLE), _c(Op.MOVE)], {"P1": _row(OFF)},
         LOCKED, {}, []),
        ("created in this plan: disabled right after",
         [_c(Op.CREATE), _c(Op.ADD_MEMBERS, "G1", "group")], {}, LOCKED, {},
         [("create", "P1", WHY), ("add_members", "G1", WHY), ("disable", "P1", LOCKED["P1"])]),
        ("soft-deleted and restored: stays disabled", [_c(Op.RESTORE), _c(Op.ENABLE)], {"P1": _row(GONE)},
         LOCKED, {}, [("restore", "P1", WHY)]),
        ("the lifecycle disables and deletes: left as planned, no second disable",
         [_c(Op.DISABLE, reason="stopped"), _c(Op.DELETE, reason="stopped")], {"P1": _row(ON)},
         LOCKED, {}, [("disable", "P1", "stopped"), ("delete", "P1", "stopped")]),
        ("no account in this target: nothing", [], {}, LOCKED, {}, []),
        ("other persons are untouched", [_c(Op.ENABLE, "P2")], {"P2": _row(OFF, pid="P2")},
         LOCKED, {}, [("enable", "P2", WHY)]),
        ("unlocked: the enable names the unlock", [_c(Op.ENABLE)], {"P1": _row(OFF)}, {}, UNLOCKED,
         [("enable", "P1", f"unlocked by kari on 2026-11-20; {WHY}")]),
        ("disabled after the unlock (the lifecycle): the enable is the lifecycle's", [_c(Op.ENABLE)],
         {"P1": _row(OFF, since="2026-11-25")}, {}, UNLOCKED, [("enable", "P1", WHY)]),
    ],
)  # fmt: skip
def test_plan_locks(
    name: str,
    changes: list[Change],
    index: dict[str, IndexRow],
    locked: dict[str, str],
    released: dict[str, tuple[str, str]],
    want: list[tuple[str, str, str]],
) -> None:
    out = plan_locks("ad", changes, index, locked, released)
    assert [(c.op.value, c.key, c.reason) for c in out] == want, name
    assert not any(c.op is Op.DELETE and c.reason.startswith("locked") for c in out)


def test_plan_locks_disable_carries_the_stored_anchor() -> None:
    [c] = plan_locks("m365", [], {"P1": _row(ObjectStatus.ACTIVE)}, LOCKED)
    assert (c.target, c.anchor, c.username, c.person_id) == ("m365", "guid-P1", "uP1", "P1")
