"""The Feide LDIF connector and the LDIF writer, read back with an independent RFC 2849 reader."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from connectors.base import StoredObject
from connectors.errors import RejectedError
from connectors.feide.ldif import FeideLdifConnector
from connectors.ldap import ldif
from mappings import feide
from mappings.base import MappingContext
from provisioner.apply.executor import apply_plan
from provisioner.config import FeideConfig
from provisioner.core.diff import compared, diff_target
from provisioner.core.model import DesiredState, TargetObject
from provisioner.core.nin_seal import NinSeal
from provisioner.core.plan import Change, Op, Plan, TargetPlan
from provisioner.kinds import kind_of
from provisioner.state.store import StateStore
from tests.test_mapping_feide import NIN, OWNER, make_state

CFG = FeideConfig(base_dn="dc=eksempel,dc=no")
CTX = MappingContext(OWNER, CFG, "2025-09-01")
ORG_DN = "dc=eksempel,dc=no"
SOR_DN = "norEduOrgUnitUniqueIdentifier=NO974000002,ou=units,dc=eksempel,dc=no"


# -- an RFC 2849 reader, independent of the writer -------------------------------------


def read_ldif(text: str) -> list[dict[str, Any]]:
    """Records as dicts: dn, changetype (or None), attrs {name: [values]}, mods [(op, name, values)]."""
    physical = text.split("\n")
    assert physical[-1] == "", "file must end with a newline"
    for ln in physical:
        assert len(ln) <= 76, f"line longer than 76: {ln!r}"
        assert ln.isascii(), f"non-ASCII line: {ln!r}"
    logical: list[str] = []
    for ln in physical[:-1]:
        if ln.startswith(" "):
            logical[-1] += ln[1:]
        else:
            logical.append(ln)
    # Change records (delta files) start with "version: 1"; content records (full files)
    # have none, so slapadd loads them too.
    changes = any(ln.lower().startswith("changetype:") for ln in logical)
    assert (logical[0] == "version: 1") == changes, logical[0]
    records, cur = [], []
    for ln in logical[int(changes) :] + [""]:
        if ln == "":
            if cur:
                records.append(cur)
            cur = []
        elif not ln.startswith("#"):
            cur.append(ln)
    return [_record(r) for r in records]


def _pair(ln: str) -> tuple[str, str]:
    name, _, rest = ln.partition(":")
    if rest.startswith(":"):
        return name, base64.b64decode(rest[1:].strip()).decode("utf-8")
    assert rest == "" or rest.startswith(" "), ln
    value = rest[1:]
    assert not value.startswith((" ", ":", "<")), f"unsafe plain value: {ln!r}"
    return name, value


def _record(lines: list[str]) -> dict[str, Any]:
    name, dn = _pair(lines[0])
    assert name == "dn"
    rec: dict[str, Any] = {"dn": dn, "changetype": None, "attrs": {}, "mods": []}
    rest = lines[1:]
    if rest and rest[0].startswith("changetype:"):
        rec["changetype"] = _pair(rest[0])[1]
        rest = rest[1:]
    if rec["changetype"] == "modify":
        i = 0
        while i < len(rest):
            op, attr = _pair(rest[i])
            values = []
            i += 1
            while rest[i] != "-":
                n, v = _pair(rest[i])
                assert n == attr
                values.append(v)
                i += 1
            rec["mods"].append((op, attr, values))
            i += 1
        return rec
    for ln in rest:
        n, v = _pair(ln)
        rec["attrs"].setdefault(n, []).append(v)
    return rec


def as_ldap(attrs: Any) -> dict[str, list[str]]:
    """What the entry should hold: every value a list of strings, dn and empties left out."""
    out = {}
    for k, v in attrs.items():
        if k == "dn" or v is None or v == [] or v == "":
            continue
        out[k] = list(v) if isinstance(v, list) else [str(v)]
    return out


# -- helpers ----------------------------------------------------------------------------


def mapped() -> list[TargetObject]:
    return list(feide.map_state(make_state(), CTX))


def create(o: TargetObject) -> Change:
    return Change(
        target="feide",
        op=Op.CREATE,
        kind=o.kind,
        key=o.key,
        reason="test",
        attrs=dict(o.attrs),
        place=dict(o.place),
        username=o.username,
        person_id=o.person_id,
    )


def stored(objs: list[TargetObject], status: str = "active") -> list[StoredObject]:
    return [
        StoredObject(o.kind, o.key, o.place["dn"], status, dict(o.record()), None, o.username) for o in objs
    ]


def no_anchor(kind: str, key: str) -> str | None:
    return None


@pytest.fixture()
def first_run(tmp_path: Path) -> tuple[FeideLdifConnector, list[TargetObject]]:
    objs = mapped()
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("run-1", no_anchor)
    for o in objs:
        applied = conn.accept(create(o))
        assert applied.anchor == o.place["dn"]
    conn.export([])  # nothing stored yet: the files come from the changes alone
    conn.close()
    return conn, objs


# -- the writer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("", True),
        ("abc", True),
        ("a:b<c", True),
        ("urn:mace:feide.no:go:group:b::NO1:x", True),
        (" lead", False),
        (":colon", False),
        ("<less", False),
        ("trail ", False),
        ("æøå", False),
        ("emoji 😀", False),
        ("a\nb", False),
        ("a\rb", False),
        ("a\x00b", False),
    ],
)
def test_safe_string(value: str, safe: bool) -> None:
    assert ldif.is_safe_string(value) is safe
    line = ldif.line("x", value)
    assert line.startswith("x:: " if not safe else "x: ")
    assert read_ldif("dn: a=b\n" + line + "\n")[0]["attrs"].get("x", [""]) == [value]


def test_folding_at_76() -> None:
    value = "v" * 500
    text = ldif.line("attr", value)
    lines = text.rstrip("\n").split("\n")
    assert all(len(ln) <= 76 for ln in lines) and len(lines[0]) == 76
    assert all(ln.startswith(" ") for ln in lines[1:])
    assert "".join([lines[0]] + [ln[1:] for ln in lines[1:]]) == "attr: " + value


def test_values_of() -> None:
    assert ldif.values_of(True) == ["TRUE"]
    assert ldif.values_of(3) == ["3"]
    assert ldif.values_of(None) == [] and ldif.values_of([]) == [] and ldif.values_of("") == []
    with pytest.raises(TypeError):
        ldif.values_of({"a": 1})


# -- the full file ----------------------------------------------------------------------


def test_full_file_holds_every_entry_parents_first(first_run) -> None:
    conn, objs = first_run
    full = conn.output_dir / "feide-full-run-1.ldif"
    records = read_ldif(full.read_text(encoding="utf-8"))
    dns = [r["dn"] for r in records]
    assert dns[:3] == [ORG_DN, "ou=people,dc=eksempel,dc=no", "ou=units,dc=eksempel,dc=no"]
    assert all(r["changetype"] is None for r in records)
    by_dn = {r["dn"]: r["attrs"] for r in records}
    assert len(by_dn) == len(objs) + 2
    for o in objs:
        assert by_dn[o.place["dn"]] == as_ldap(o.attrs), o.key
    assert by_dn["ou=people,dc=eksempel,dc=no"] == {
        "objectClass": ["top", "organizationalUnit"],
        "ou": ["people"],
    }
    # Schools before persons (their parents' parents come first too).
    first_person = min(i for i, r in enumerate(records) if r["dn"].startswith("uid="))
    assert max(i for i, r in enumerate(records) if "norEduOrgUnit" in r["dn"]) < first_person


def test_non_ascii_and_unsafe_values_are_base64(first_run) -> None:
    conn, _ = first_run
    text = (conn.output_dir / "feide-full-run-1.ldif").read_text(encoding="utf-8")
    assert "ou:: " + base64.b64encode("Sørby skole".encode()).decode() in text
    assert "displayName:: " + base64.b64encode(b" leading and trailing ").decode() in text
    assert "norEduPersonNIN: " + NIN in text
    assert text.isascii()


def test_entitlements_fold_and_round_trip(first_run) -> None:
    conn, objs = first_run
    text = (conn.output_dir / "feide-full-run-1.ldif").read_text(encoding="utf-8")
    assert any(ln.startswith(" ") for ln in text.split("\n"))  # the long values are folded
    rec = {r["dn"]: r for r in read_ldif(text)}
    s1 = next(o for o in objs if o.key == "S1")
    assert rec[s1.place["dn"]]["attrs"]["eduPersonEntitlement"] == s1.attrs["eduPersonEntitlement"]


def test_latest_is_the_full_file_and_no_temp_files_remain(first_run) -> None:
    conn, _ = first_run
    out = conn.output_dir
    assert (out / "latest-full.ldif").read_bytes() == (out / "feide-full-run-1.ldif").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [
        "feide-delta-run-1.ldif",
        "feide-full-run-1.ldif",
        "latest-full.ldif",
    ]


def test_first_delta_adds_everything_in_order(first_run) -> None:
    conn, objs = first_run
    records = read_ldif((conn.output_dir / "feide-delta-run-1.ldif").read_text(encoding="utf-8"))
    assert {r["changetype"] for r in records} == {"add"}
    dns = [r["dn"] for r in records]
    assert dns[:3] == [ORG_DN, "ou=people,dc=eksempel,dc=no", "ou=units,dc=eksempel,dc=no"]
    by_dn = {r["dn"]: r["attrs"] for r in records}
    for o in objs:
        assert by_dn[o.place["dn"]] == as_ldap(o.attrs)


def test_deleted_objects_are_left_out_of_the_full_file(tmp_path: Path) -> None:
    objs = mapped()
    gone = [o for o in objs if o.key == "S1"]
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("r", no_anchor)
    current = stored([o for o in objs if o.key != "S1"]) + stored(gone, status="deleted")
    conn.export(current)
    text = (tmp_path / "feide-full-r.ldif").read_text()
    assert gone[0].place["dn"] not in text
    assert not (tmp_path / "feide-delta-r.ldif").exists()  # no changes, no delta


# -- the delta file ---------------------------------------------------------------------


def test_update_move_and_delete_records(tmp_path: Path) -> None:
    objs = mapped()
    by_key = {o.key: o for o in objs}
    s1, t1, nord = by_key["S1"], by_key["T1"], by_key["NORD"]
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("run-2", lambda kind, key: {"T1": t1.place["dn"]}.get(key))
    new_nord = "norEduOrgUnitUniqueIdentifier=NO974000009,ou=units,dc=eksempel,dc=no"
    changes = [
        Change(
            "feide",
            Op.MOVE,
            "orgunit",
            "NORD",
            "org number changed",
            anchor=nord.place["dn"],
            place={"dn": new_nord},
        ),
        Change(
            "feide",
            Op.UPDATE,
            "orgunit",
            "NORD",
            "org number changed",
            anchor=nord.place["dn"],  # the differ's anchor is the one before the move
            attrs={"norEduOrgUnitUniqueIdentifier": "NO974000009"},
        ),
        Change(
            "feide",
            Op.UPDATE,
            "person",
            "S1",
            "renamed; NIN removed; left every group",
            anchor=s1.place["dn"],
            attrs={"displayName": "Ola Ærlig", "norEduPersonNIN": None, "eduPersonEntitlement": []},
        ),
        Change("feide", Op.DELETE, "person", "T1", "stopped"),  # anchor from the resolver
    ]
    applied = [conn.accept(c) for c in changes]
    assert [a.anchor for a in applied] == [new_nord, new_nord, s1.place["dn"], t1.place["dn"]]
    conn.export(stored(objs))  # what the store holds before the changes
    records = read_ldif((tmp_path / "feide-delta-run-2.ldif").read_text(encoding="utf-8"))
    assert [(r["dn"], r["changetype"]) for r in records] == [
        (nord.place["dn"], "modrdn"),
        (new_nord, "modify"),
        (s1.place["dn"], "modify"),
        (t1.place["dn"], "delete"),
    ]
    modrdn = records[0]["attrs"]
    assert modrdn == {"newrdn": ["norEduOrgUnitUniqueIdentifier=NO974000009"], "deleteoldrdn": ["1"]}
    assert records[1]["mods"] == [("replace", "norEduOrgUnitUniqueIdentifier", ["NO974000009"])]
    assert records[2]["mods"] == [
        ("replace", "displayName", ["Ola Ærlig"]),
        ("delete", "norEduPersonNIN", []),
        ("delete", "eduPersonEntitlement", []),
    ]


def test_move_to_another_parent_has_newsuperior() -> None:
    text = "version: 1\n\n" + ldif.modrdn_record("uid=a,ou=old,dc=x", "uid=a", "ou=new,dc=x")
    rec = read_ldif(text)[0]
    assert rec["changetype"] == "modrdn"
    assert rec["attrs"] == {"newrdn": ["uid=a"], "deleteoldrdn": ["1"], "newsuperior": ["ou=new,dc=x"]}


def test_deletes_go_children_first(tmp_path: Path) -> None:
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("r", no_anchor)
    conn.accept(Change("feide", Op.DELETE, "org", "org", "gone", anchor=ORG_DN))
    conn.accept(Change("feide", Op.DELETE, "orgunit", "SOR", "gone", anchor=SOR_DN))
    conn.accept(
        Change("feide", Op.DELETE, "person", "S1", "gone", anchor="uid=us1,ou=people,dc=eksempel,dc=no")
    )
    conn.export([])
    records = read_ldif((tmp_path / "feide-delta-r.ldif").read_text())
    assert [r["dn"] for r in records] == ["uid=us1,ou=people,dc=eksempel,dc=no", SOR_DN, ORG_DN]
    assert {r["changetype"] for r in records} == {"delete"}


def test_delete_without_a_dn_is_a_no_op(tmp_path: Path) -> None:
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("r", no_anchor)
    applied = conn.accept(Change("feide", Op.DELETE, "person", "X", "gone"))
    assert applied.anchor is None and "nothing to delete" in (applied.note or "")
    conn.export([])
    assert not (tmp_path / "feide-delta-r.ldif").exists()


def test_add_record_is_the_stores_entry_after_apply(tmp_path: Path) -> None:
    o = next(o for o in mapped() if o.key == "S1")
    after = {**o.record(), "displayName": "Stored After Apply"}
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("r", no_anchor)
    conn.accept(create(o))
    # Updated later in the same run: the add record is the entry as the store will hold it.
    conn.accept(
        Change("feide", Op.UPDATE, "person", "S1", "renamed", attrs={"displayName": after["displayName"]})
    )
    conn.export([])
    rec = read_ldif((tmp_path / "feide-delta-r.ldif").read_text())
    assert rec[0]["changetype"] == "add"
    assert rec[0]["attrs"] == as_ldap(after)
    assert list(rec[0]["attrs"])[0] == "objectClass"


def test_create_without_a_store_record_uses_its_own_attrs(tmp_path: Path) -> None:
    o = next(o for o in mapped() if o.key == "S1")
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("r", no_anchor)
    conn.accept(create(o))
    conn.export([])
    rec = read_ldif((tmp_path / "feide-delta-r.ldif").read_text())
    assert [(r["dn"], r["changetype"]) for r in rec] == [(o.place["dn"], "add")]
    assert rec[0]["attrs"] == as_ldap(o.attrs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (Change("feide", Op.DISABLE, "person", "S1", "x", anchor="uid=a,dc=x"), "not supported"),
        (Change("feide", Op.ADD_MEMBERS, "group", "G", "x", members=(("S1", ""),)), "unknown object kind"),
        (Change("feide", Op.CREATE, "person", "S1", "x", attrs={"objectClass": ["top"]}), "no dn"),
        (Change("feide", Op.CREATE, "person", "S1", "x", place={"dn": "uid=a,dc=x"}), "no objectClass"),
        (
            Change("feide", Op.UPDATE, "person", "S1", "x", anchor="uid=a,dc=x", attrs={"bad name": "v"}),
            "not an LDAP",
        ),
        (
            Change("feide", Op.UPDATE, "person", "S1", "x", anchor="uid=a,dc=x", attrs={"cn": {"a": 1}}),
            "cannot write",
        ),
        (Change("feide", Op.UPDATE, "person", "S1", "x", attrs={"cn": "v"}), "no DN known"),
    ],
)
def test_rejected(tmp_path: Path, change: Change, message: str) -> None:
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.begin("r", no_anchor)
    with pytest.raises(RejectedError, match=message):
        conn.accept(change)


def test_prunes_old_full_files(tmp_path: Path) -> None:
    conn = FeideLdifConnector(CFG, OWNER, tmp_path, keep_full=2)
    current = stored(mapped())
    for i in range(4):
        conn.begin(f"r{i}", no_anchor)
        conn.export(current)
    assert sorted(p.name for p in tmp_path.glob("feide-full-*")) == [
        "feide-full-r2.ldif",
        "feide-full-r3.ldif",
    ]


# -- through the differ, the executor and the state store -------------------------------


def test_three_runs_through_differ_executor_and_store(tmp_path: Path) -> None:
    cfg = FeideConfig(base_dn="dc=eksempel,dc=no", mode="apply")
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    out = tmp_path / "out"

    def run(state: DesiredState, run_id: str) -> dict[str, int]:
        objs = list(feide.map_state(state, MappingContext(OWNER, cfg, state.as_of)))
        index = store.objects.index("feide")
        got = compared(objs, index)
        changes = diff_target(
            "feide",
            got.desired,
            got.digests,
            index,
            store.objects.details("feide", got.stored),
            unchanged=got.unchanged,
            policy=kind_of("feide").policy(cfg),
            placement=feide.PLACEMENT_ATTRS,
            persons=state.persons,
            identities={},
            frozen=frozenset(),
            school_names={},
            as_of=state.as_of,
        )
        plan = Plan(
            run_id, "2025-09-01T00:00:00+00:00", state.as_of, {}, (TargetPlan("feide", tuple(changes)),)
        )
        res = apply_plan(plan, store, {"feide": FeideLdifConnector(cfg, OWNER, out)}, soft_delete={})
        assert res["feide"].rejected == res["feide"].failed == 0
        return plan.summary()["feide"]

    try:
        s1 = make_state()
        assert run(s1, "r1") == {"create": 11}
        # NORD gets a new org number (its DN moves), S1 leaves, T1 is renamed.
        schools = {**s1.schools, "NORD": s1.schools["NORD"]._replace(org_number="974000009")}
        persons = {k: p for k, p in s1.persons.items() if k != "S1"}
        persons["T1"] = dataclasses.replace(persons["T1"], display_name="Kari Ny")
        groups = {
            k: dataclasses.replace(g, members=tuple(m for m in g.members if m[0] != "S1"))
            for k, g in s1.groups.items()
        }
        s2 = DesiredState(s1.as_of, schools, persons, groups)
        counts = run(s2, "r2")
        assert counts["move"] == 1 and counts["delete"] == 1 and counts["update"] >= 2
        assert run(s2, "r3") == {}

        delta = read_ldif((out / "feide-delta-r2.ldif").read_text(encoding="utf-8"))
        new_nord = "norEduOrgUnitUniqueIdentifier=NO974000009,ou=units,dc=eksempel,dc=no"
        assert delta[0]["changetype"] == "modrdn" and delta[1]["dn"] == new_nord  # update after the move
        assert delta[-1] == {
            "dn": "uid=us1,ou=people,dc=eksempel,dc=no",
            "changetype": "delete",
            "attrs": {},
            "mods": [],
        }
        t1 = next(r for r in delta if r["dn"] == "uid=ut1,ou=people,dc=eksempel,dc=no")
        assert ("replace", "displayName", ["Kari Ny"]) in t1["mods"]
        # The full file of the second run is exactly the second state's mapping.
        full = {
            r["dn"]: r["attrs"] for r in read_ldif((out / "latest-full.ldif").read_text(encoding="utf-8"))
        }
        for o in feide.map_state(s2, MappingContext(OWNER, cfg, s2.as_of)):
            assert full[o.place["dn"]] == as_ldap(o.attrs)
        assert len(full) == len(list(feide.map_state(s2, MappingContext(OWNER, cfg, s2.as_of)))) + 2
    finally:
        store.close()


# -- full files when due (full_every_hours) ---------------------------------------------


def _daily(folder: Path, run_id: str, hours: int = 24) -> FeideLdifConnector:
    conn = FeideLdifConnector(CFG.model_copy(update={"full_every_hours": hours}), OWNER, folder)
    conn.begin(run_id, no_anchor)
    return conn


def _changes(objs: list[TargetObject]) -> list[Change]:
    """A created school and person, updates and a delete: every kind of delta record."""
    by_key = {o.key: o for o in objs}
    t1, a1 = by_key["T1"], by_key["A1"]
    return [
        create(by_key["NORD"]),
        create(by_key["S1"]),
        # Updated after its create in the same run: the add record is the entry after both.
        Change("feide", Op.UPDATE, "person", "S1", "renamed", attrs={"displayName": "Ola Ny"}),
        Change("feide", Op.UPDATE, "person", "T1", "renamed", anchor=t1.place["dn"], attrs={"sn": "Ny"}),
        Change("feide", Op.DELETE, "person", "A1", "stopped", anchor=a1.place["dn"]),
    ]


def test_a_full_file_only_when_due_and_the_same_delta_either_way(tmp_path: Path) -> None:
    import os
    import time

    objs = mapped()
    before = stored([o for o in objs if o.key not in ("NORD", "S1")])
    daily, every = tmp_path / "daily", tmp_path / "every"
    first = _daily(daily, "r1")
    first.export(before)  # no full file yet: one is written, and no delta (no changes)
    assert [p.name for p in first.written] == ["feide-full-r1.ldif"]

    runs = {folder: _daily(folder, "r2", hours) for folder, hours in ((daily, 24), (every, 0))}
    asked: list[set[str]] = []

    def some(keys):  # noqa: ANN001, ANN202 - the StoredLookup protocol
        asked.append(set(keys))
        return [o for o in before if o.key in keys]

    def unread():  # noqa: ANN202
        raise AssertionError("a delta alone must not read every stored object")
        yield

    for folder, conn in runs.items():
        for c in _changes(objs):
            conn.accept(c)
        conn.export(unread() if folder == daily else before, some)
    assert asked == [{"NORD", "S1"}], "a delta alone reads only the records of the objects it creates"
    assert [p.name for p in runs[daily].written] == ["feide-delta-r2.ldif"]
    assert [p.name for p in runs[every].written] == ["feide-full-r2.ldif", "feide-delta-r2.ldif"]
    delta = (daily / "feide-delta-r2.ldif").read_text(encoding="utf-8")
    assert delta == (every / "feide-delta-r2.ldif").read_text(encoding="utf-8")
    records = read_ldif(delta)
    assert [r["changetype"] for r in records] == ["add", "add", "modify", "modify", "delete"]
    assert records[1]["attrs"]["displayName"] == ["Ola Ny"]
    assert not (daily / "feide-full-r2.ldif").exists()
    assert os.path.samefile(daily / "latest-full.ldif", daily / "feide-full-r1.ldif")

    quiet = _daily(daily, "r3")
    quiet.export(before)  # nothing changed, no full file due: nothing written
    assert quiet.written == [] and not list(daily.glob("*-r3.ldif"))

    day_old = time.time() - 24 * 3600 - 60
    os.utime(daily / "feide-full-r1.ldif", (day_old, day_old))
    due = _daily(daily, "r4")
    due.export(before)
    assert [p.name for p in due.written] == ["feide-full-r4.ldif"]
    assert os.path.samefile(daily / "latest-full.ldif", daily / "feide-full-r4.ldif")
    # Both are the store as it was before r2's changes (the test's store is not updated).
    assert (daily / "feide-full-r4.ldif").read_bytes() == (daily / "feide-full-r1.ldif").read_bytes()


def test_full_every_hours_is_for_ldif_files_only() -> None:
    with pytest.raises(ValueError, match="full_every_hours: only for LDIF files"):
        FeideConfig(base_dn="dc=eksempel,dc=no", url="ldaps://ldap.example.no", full_every_hours=24)


def test_a_sealed_nin_is_whole_in_the_files_and_nowhere_in_what_the_exporter_keeps(tmp_path: Path) -> None:
    """The exporter checks a change's sealed NIN as it accepts it and makes it whole only as it
    writes the record: until then it keeps the change's own (sealed) attributes, no whole copy
    (at Oslo size that copy was ~70 MB of the first run's peak, and a whole NIN in memory)."""
    seal = NinSeal(b"k" * 32)
    state = make_state()
    objs = list(feide.map_state(state, dataclasses.replace(CTX, seal=seal)))
    carried = {p.nin for p in state.persons.values() if p.nin and seal(p.nin) in _sealed_nins(objs)}
    book = {seal(n): n for n in carried}
    assert len(book) >= 2 and NIN in carried
    by_key = {o.key: o for o in objs}
    conn = FeideLdifConnector(CFG, OWNER, tmp_path)
    conn.use_nin_book(book.get)
    conn.begin("run-1", no_anchor)
    for o in objs:
        if o.key != "S1":
            conn.accept(create(o))
    s1 = by_key["S1"]
    update = Change(
        "feide",
        Op.UPDATE,
        "person",
        "S1",
        "NIN corrected",
        anchor=s1.place["dn"],
        attrs={"norEduPersonNIN": seal(NIN)},
    )
    conn.accept(update)
    unknown = dataclasses.replace(update, attrs={"norEduPersonNIN": seal("01010012399")})
    with pytest.raises(RejectedError, match="the historic base has no NIN"):
        conn.accept(unknown)  # refused as it is accepted, not when the files are written
    kept = repr(vars(conn))
    assert not [n for n in book.values() if n in kept]
    conn.export([])
    delta = (tmp_path / "feide-delta-run-1.ldif").read_text(encoding="utf-8")
    full = (tmp_path / "feide-full-run-1.ldif").read_text(encoding="utf-8")
    for text in (delta, full):
        assert "*****~" not in text
    assert all(n in delta for n in book.values())  # the creates' and the update's, whole
    assert {n for n in book.values() if n in full} == set(book.values()) - {NIN}  # S1 is not stored


def _sealed_nins(objs: list[TargetObject]) -> set[str]:
    return {o.attrs["norEduPersonNIN"] for o in objs if o.attrs.get("norEduPersonNIN")}
