"""The itslearning file connector: IMS Enterprise 1.1 full and delta files."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlschema

from connectors.base import StoredObject
from connectors.errors import FatalError, RejectedError
from connectors.itslearning import ims_xml
from connectors.itslearning.connector import LATEST_FULL, ItslearningConnector
from mappings import itslearning as mapping
from mappings.base import MappingContext
from provisioner.config import ItslearningConfig, OwnerConfig
from provisioner.core.model import TargetObject
from provisioner.core.plan import Change, Op
from tests.test_mapping_itslearning import state

# A copy of ../shared/schemas/ims_epv1p1.xsd, so a clone anywhere can validate.
XSD = Path(__file__).resolve().parent / "data" / "ims_epv1p1.xsd"
NS = {"i": ims_xml.NAMESPACE}
OWNER = OwnerConfig(
    name="Nordby kommune", org_number="123456785", realm="nordby.kommune.no", mail_domain="skole.no"
)
NASTY = " Åse , + \" \\ < > ; = * ( ) # & ' 😀\t "  # leading/trailing spaces kept


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def objects(nin_as_sourcedid: bool = False) -> list[TargetObject]:
    """The mapped test state."""
    ctx = MappingContext(OWNER, ItslearningConfig(nin_as_sourcedid=nin_as_sourcedid), "2025-09-01")
    return list(mapping.map_state(state(), ctx))


def stored(objs: list[TargetObject], status: str = "active") -> list[StoredObject]:
    """Target objects as the state store would hold them after apply."""
    return [
        StoredObject(o.kind, o.key, o.attrs["sourcedid"], status, dict(o.record()), o.members, o.username)
        for o in objs
    ]


def connector(
    tmp_path: Path, run_id: str = "run-1", when: str = "2025-09-01T06:00:00", **kw
) -> ItslearningConnector:
    conn = ItslearningConnector(
        ItslearningConfig(),
        OWNER,
        tmp_path,
        clock=lambda: datetime.fromisoformat(when).replace(tzinfo=UTC),
        **kw,
    )
    conn.begin(run_id, lambda kind, key: None)
    return conn


def create(o: TargetObject) -> Change:
    return Change(
        "itslearning",
        Op.CREATE,
        o.kind,
        o.key,
        "new",
        attrs=dict(o.attrs),
        links=dict(o.links),
        person_id=o.person_id,
    )


def add_members(o: TargetObject) -> Change:
    """The members of a created group: a change of their own, as the differ plans them."""
    return Change("itslearning", Op.ADD_MEMBERS, o.kind, o.key, "new", members=tuple(o.members or ()))


def parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def sid(el: ET.Element) -> str:
    return el.findtext("i:sourcedid/i:id", namespaces=NS) or ""


def persons(root: ET.Element) -> dict[str, ET.Element]:
    return {sid(p): p for p in root.findall("i:person", NS)}


def groups(root: ET.Element) -> dict[str, ET.Element]:
    return {sid(g): g for g in root.findall("i:group", NS)}


def memberships(root: ET.Element) -> dict[str, list[tuple[str, str, str | None, str]]]:
    """group sourcedid -> [(member sourcedid, roletype, recstatus, status)]."""
    out: dict[str, list[tuple[str, str, str | None, str]]] = {}
    for ms in root.findall("i:membership", NS):
        rows = out.setdefault(sid(ms), [])
        for mem in ms.findall("i:member", NS):
            assert mem.findtext("i:idtype", namespaces=NS) == "1"
            for role in mem.findall("i:role", NS):
                rows.append(
                    (
                        sid(mem),
                        role.get("roletype"),
                        role.get("recstatus"),
                        role.findtext("i:status", namespaces=NS),
                    )
                )
    return out


# -- full and delta from a small state ----------------------------------------------------


def test_first_run_full_and_delta(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    objs = objects()
    conn = connector(tmp_path)
    for o in objs:
        applied = conn.accept(create(o))
        assert applied.anchor == o.attrs["sourcedid"]
        if o.members:
            assert conn.accept(add_members(o)).anchor == o.attrs["sourcedid"]
    conn.export([])  # nothing stored yet: the files come from the changes alone
    conn.close()
    conn.close()  # safe twice

    full = tmp_path / "ims-full-20250901T060000Z-run-1.xml"
    delta = tmp_path / "ims-delta-20250901T060000Z-run-1.xml"
    assert conn.written == [full, delta]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([full.name, delta.name, LATEST_FULL])
    assert (tmp_path / LATEST_FULL).read_bytes() == full.read_bytes()
    schema.validate(str(full))
    schema.validate(str(delta))

    root = parse(full)
    assert root.findtext("i:properties/i:datasource", namespaces=NS) == "BAS"
    assert root.findtext("i:properties/i:datetime", namespaces=NS) == "2025-09-01T06:00:00Z"
    people = persons(root)
    assert set(people) == {"S1", "T1", "A1", "L1", "SE", "G1", "G2", "TG"}
    assert all(p.get("recstatus") is None for p in people.values()), "a full file carries no recstatus"
    s1 = people["S1"]
    assert s1.findtext("i:userid", namespaces=NS) == "uS1"
    assert s1.findtext("i:name/i:fn", namespaces=NS) == "Ola Nordmann"
    assert s1.findtext("i:name/i:n/i:family", namespaces=NS) == "Nordmann"
    assert s1.findtext("i:name/i:n/i:given", namespaces=NS) == "Ola"
    assert s1.findtext("i:email", namespaces=NS) == "uS1@skole.no"
    assert s1.find("i:institutionrole", NS).attrib == {"primaryrole": "Yes", "institutionroletype": "Student"}
    assert people["G2"].find("i:email", NS) is None
    assert people["G1"].find("i:institutionrole", NS).get("institutionroletype") == "Guest"
    links = people["G1"].findall("i:extension/i:relationship", NS)
    assert [(r.get("relation"), sid(r), r.findtext("i:label", namespaces=NS)) for r in links] == [
        ("2", "S1", "Child")
    ]

    grps = groups(root)
    assert list(grps)[:2] == ["org:123456785", "school:NORDBY"], "parents first"
    assert grps["org:123456785"].find("i:relationship", NS) is None
    parent = {
        k: sid(g.find("i:relationship", NS))
        for k, g in grps.items()
        if g.find("i:relationship", NS) is not None
    }
    assert parent["school:NORDBY"] == "org:123456785"
    assert parent["5A"] == parent["school:NORDBY:guardians"] == "school:NORDBY"
    assert all(g.find("i:relationship", NS).get("relation") == "1" for k, g in grps.items() if k in parent)
    mat = grps["5A-MAT"]
    assert mat.findtext("i:description/i:short", namespaces=NS) == "Gruppe 5A-MAT"
    assert mat.findtext("i:description/i:long", namespaces=NS) == "MAT0010"
    assert mat.findtext("i:grouptype/i:typevalue", namespaces=NS) == "Undervisningsgruppe"
    assert mat.findtext("i:timeframe/i:begin", namespaces=NS) == "2025-08-18"
    assert mat.findtext("i:timeframe/i:end", namespaces=NS) == "2026-06-19"

    ms = memberships(root)
    assert ms["5A-MAT"] == [("A1", "04", None, "1"), ("S1", "01", None, "1"), ("T1", "02", None, "1")]
    assert ms["school:NORDBY:guardians"] == [
        ("G1", "06", None, "1"),
        ("G2", "06", None, "1"),
        ("TG", "06", None, "1"),
    ]

    # The first delta adds everything, memberships of created groups included.
    d = parse(delta)
    assert {p.get("recstatus") for p in d.findall("i:person", NS)} == {"1"}
    assert set(persons(d)) == set(people)
    assert set(groups(d)) == set(grps)
    assert memberships(d)["5A"] == [("S1", "01", "1", "1"), ("T1", "02", "1", "1")]


def test_nin_as_sourcedid_is_used_in_every_reference(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    objs = objects(nin_as_sourcedid=True)
    # Guardians first: links to students written before the students still resolve.
    objs.sort(key=lambda o: (o.kind != "person", o.key[0] != "G"))
    conn = connector(tmp_path)
    conn.export(stored(objs))
    schema.validate(str(conn.written[0]))
    root = parse(conn.written[0])
    nin = "01010012356"
    assert nin in persons(root)
    assert [sid(r) for r in persons(root)["G2"].findall("i:extension/i:relationship", NS)] == [nin]
    assert ("01010012356", "01", None, "1") in memberships(root)["5A"]
    assert conn.written == [tmp_path / "ims-full-20250901T060000Z-run-1.xml"], "no changes, no delta"


def test_update_delete_and_member_changes(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    objs = objects()
    gone = {("person", "G2"), ("group", "MIX")}
    # The store keeps deleted objects (status "deleted"): never in a full file. (What the
    # store holds before the changes; export applies them.)
    current = stored([o for o in objs if (o.kind, o.key) not in gone])
    current += stored([o for o in objs if (o.kind, o.key) in gone], status="deleted")
    conn = connector(tmp_path, run_id="2025-09-02/run 7")
    changes = [
        Change(
            "itslearning",
            Op.UPDATE,
            "person",
            "S1",
            "renamed",
            anchor="S1",
            attrs={"fn": "Ola Nordmann"},
            before={"fn": "Ola Normann"},
        ),
        Change("itslearning", Op.DELETE, "person", "G2", "left", anchor="G2"),
        Change("itslearning", Op.UPDATE, "group", "5A", "renamed", anchor="5A", attrs={"name": "Gruppe 5A"}),
        Change("itslearning", Op.DELETE, "group", "MIX", "gone", anchor="MIX"),
        Change(
            "itslearning", Op.ADD_MEMBERS, "group", "5A-KL", "joined", anchor="5A-KL", members=(("SE", "01"),)
        ),
        Change(
            "itslearning",
            Op.REMOVE_MEMBERS,
            "group",
            "5A-KL",
            "left",
            anchor="5A-KL",
            members=(("G2", "06"), ("X9", "01")),
        ),
        Change(
            "itslearning", Op.REMOVE_MEMBERS, "group", "MIX", "gone", anchor="MIX", members=(("SE", "04"),)
        ),
    ]
    assert [conn.accept(c).anchor for c in changes] == ["S1", "G2", "5A", "MIX", "5A-KL", "5A-KL", "MIX"]
    conn.export(current)
    full, delta = conn.written
    assert delta.name == "ims-delta-20250901T060000Z-2025-09-02_run_7.xml"
    schema.validate(str(full))
    schema.validate(str(delta))

    d = parse(delta)
    ps = persons(d)
    assert ps["S1"].get("recstatus") == "2"
    assert ps["S1"].findtext("i:email", namespaces=NS) == "uS1@skole.no", "an update carries the whole record"
    assert ps["G2"].get("recstatus") == "3"
    assert ps["G2"].find("i:userid", NS) is None and ps["G2"].findtext("i:name/i:fn", namespaces=NS) == ""
    gs = groups(d)
    assert gs["5A"].get("recstatus") == "2"
    assert sid(gs["5A"].find("i:relationship", NS)) == "school:NORDBY"
    assert gs["MIX"].get("recstatus") == "3" and gs["MIX"].find("i:grouptype", NS) is None
    assert list(gs) == ["5A", "MIX"]
    ms = memberships(d)
    assert ms == {"5A-KL": [("G2", "06", "3", "0"), ("SE", "01", "1", "1"), ("X9", "01", "3", "0")]}, (
        "removed members carry recstatus 3; a deleted group gets no membership record"
    )

    f = parse(full)
    assert "G2" not in persons(f) and "MIX" not in groups(f)
    assert all(m[0] != "G2" for m in memberships(f)["school:NORDBY:guardians"]), "non-persons are left out"


@pytest.mark.parametrize(
    ("ops", "recstatus"),
    [((Op.REMOVE_MEMBERS, Op.ADD_MEMBERS), ("1", "1")), ((Op.ADD_MEMBERS, Op.REMOVE_MEMBERS), ("3", "0"))],
)
def test_the_later_change_to_a_member_wins_in_the_delta(
    tmp_path: Path, schema: xmlschema.XMLSchema, ops: tuple[Op, Op], recstatus: tuple[str, str]
) -> None:
    """Two changes to one (member, role) of a group in one run: the delta says what the later did."""
    objs = objects()
    conn = connector(tmp_path)
    for op in ops:
        conn.accept(
            Change("itslearning", op, "group", "5A-KL", "moved", anchor="5A-KL", members=(("SE", "01"),))
        )
    conn.export(stored(objs))
    delta = conn.written[1]
    schema.validate(str(delta))
    assert memberships(parse(delta)) == {"5A-KL": [("SE", "01", *recstatus)]}


def test_changed_sourcedid_is_written_old_and_new(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    objs = objects(nin_as_sourcedid=True)
    conn = connector(tmp_path)
    # A D-number replaced by a fødselsnummer: the mapping's sourcedid changes.
    change = Change(
        "itslearning",
        Op.UPDATE,
        "person",
        "S1",
        "new NIN",
        anchor="41010012345",
        attrs={"sourcedid": "01010012356"},
        before={"sourcedid": "41010012345"},
    )
    assert conn.accept(change).anchor == "01010012356"
    conn.export(stored(objs))
    schema.validate(str(conn.written[1]))
    s1 = parse(conn.written[1]).find("i:person", NS)
    ids = [(e.get("sourcedidtype"), e.findtext("i:id", namespaces=NS)) for e in s1.findall("i:sourcedid", NS)]
    assert ids == [("Old", "41010012345"), ("New", "01010012356")]


# -- escaping ------------------------------------------------------------------------------


def test_awkward_names_round_trip(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    attrs = {
        "sourcedid": "P&<1>",
        "userid": "ase",
        "given": NASTY,
        "family": "  Ødegård-O'Brien ",
        "fn": NASTY,
        "email": "a+b@skole.no",
        "institutionrole": "Student",
    }
    gattrs = {
        "sourcedid": 'G"1',
        "name": NASTY,
        "school": "NORDBY",
        "grouptype": "Basisgruppe",
        "subject_code": "<&>",
        "start": None,
        "end": None,
    }
    cur = [
        StoredObject("person", "P1", None, "active", attrs, None, "ase"),
        StoredObject("group", "G1", None, "active", gattrs, (("P1", "01"),), None),
    ]
    conn = connector(tmp_path)
    conn.accept(Change("itslearning", Op.CREATE, "person", "P1", "new", attrs=attrs))
    conn.export(cur)
    for path in conn.written:
        schema.validate(str(path))
        root = parse(path)
        p = persons(root)["P&<1>"]
        assert p.findtext("i:name/i:fn", namespaces=NS) == NASTY
        assert p.findtext("i:name/i:n/i:given", namespaces=NS) == NASTY
        assert p.findtext("i:name/i:n/i:family", namespaces=NS) == "  Ødegård-O'Brien "
    root = parse(conn.written[0])
    g = groups(root)['G"1']
    assert g.findtext("i:description/i:short", namespaces=NS) == NASTY
    assert g.findtext("i:description/i:long", namespaces=NS) == "<&>"
    assert memberships(root)['G"1'] == [("P&<1>", "01", None, "1")]


def test_text_escaping_rules() -> None:
    assert ims_xml.text("plain") == "plain"
    assert ims_xml.text("a&b<c>d") == "a&amp;b&lt;c&gt;d"
    assert ims_xml.text("line\r\nnext") == "line&#13;\nnext"
    assert ims_xml.text("bell\x07 nul\x00 bom\ufffe lone\ud800") == "bell nul bom lone", (
        "not representable in XML"
    )
    assert ims_xml.text(None) == ""
    assert ims_xml.attr('"q"\n') == "&quot;q&quot;&#10;"


def test_control_characters_do_not_break_the_file(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    attrs = {
        "sourcedid": "P1",
        "userid": "p1",
        "given": "A\x01na",
        "family": "B\ud800",
        "fn": "A\x0bna B",
        "email": None,
        "institutionrole": "Student",
    }
    conn = connector(tmp_path)
    conn.export([StoredObject("person", "P1", "P1", "active", attrs, None, "p1")])
    schema.validate(str(conn.written[0]))
    p = persons(parse(conn.written[0]))["P1"]
    assert p.findtext("i:name/i:fn", namespaces=NS) == "Ana B"


# -- contract behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("op", [Op.DISABLE, Op.ENABLE, Op.MOVE, Op.RESTORE, Op.PURGE])
def test_unsupported_ops_are_rejected(tmp_path: Path, op: Op) -> None:
    conn = connector(tmp_path)
    with pytest.raises(RejectedError, match=op.value):
        conn.accept(Change("itslearning", op, "person", "S1", "why"))


def test_members_only_for_groups_and_known_kinds(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    with pytest.raises(RejectedError, match="groups only"):
        conn.accept(
            Change("itslearning", Op.ADD_MEMBERS, "orgunit", "NORDBY", "why", members=(("S1", "01"),))
        )
    with pytest.raises(RejectedError, match="unknown object kind"):
        conn.accept(Change("itslearning", Op.CREATE, "mailbox", "x", "why"))


def test_anchor_falls_back_to_resolver_then_key(tmp_path: Path) -> None:
    conn = ItslearningConnector(ItslearningConfig(), OWNER, tmp_path)
    conn.begin("r", lambda kind, key: "from-store" if key == "known" else None)
    assert conn.accept(Change("itslearning", Op.DELETE, "person", "known", "gone")).anchor == "from-store"
    assert conn.accept(Change("itslearning", Op.DELETE, "person", "other", "gone")).anchor == "other"
    assert (
        conn.accept(Change("itslearning", Op.DELETE, "person", "x", "gone", anchor="given")).anchor == "given"
    )


def test_calls_before_begin_are_fatal(tmp_path: Path) -> None:
    conn = ItslearningConnector(ItslearningConfig(), OWNER, tmp_path)
    with pytest.raises(FatalError):
        conn.accept(Change("itslearning", Op.CREATE, "person", "S1", "new"))
    with pytest.raises(FatalError):
        conn.export([])


# -- files -----------------------------------------------------------------------------------


def test_no_partial_file_on_failure(tmp_path: Path) -> None:
    good = stored(objects())
    conn = connector(tmp_path, run_id="ok")
    conn.export(good)
    before = sorted(p.name for p in tmp_path.iterdir())
    latest = (tmp_path / LATEST_FULL).read_bytes()

    def broken() -> Iterator[StoredObject]:
        yield from good[:5]
        raise RuntimeError("state store went away")

    conn = connector(tmp_path, run_id="bad", when="2025-09-02T06:00:00")
    conn.accept(create(objects()[0]))
    with pytest.raises(RuntimeError):
        conn.export(broken())
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no partial file, no temp file"
    assert (tmp_path / LATEST_FULL).read_bytes() == latest


def test_write_errors_are_fatal(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    conn.output_dir = tmp_path / "missing"  # gone after begin (e.g. an unmounted share)
    with pytest.raises(FatalError, match="cannot write"):
        conn.export(stored(objects()))


def test_names_sort_by_time_and_old_full_files_are_pruned(tmp_path: Path) -> None:
    cur = stored(objects())
    for i, when in enumerate(["2025-09-01T06:00:00", "2025-09-01T07:00:00", "2025-09-01T08:00:00"]):
        conn = connector(tmp_path, run_id=f"z{9 - i}", when=when, keep_full=2)
        conn.accept(create(objects()[0]))
        conn.export(cur)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "ims-delta-20250901T060000Z-z9.xml",
        "ims-delta-20250901T070000Z-z8.xml",
        "ims-delta-20250901T080000Z-z7.xml",
        "ims-full-20250901T070000Z-z8.xml",
        "ims-full-20250901T080000Z-z7.xml",
        LATEST_FULL,
    ]
    assert os.path.samefile(tmp_path / LATEST_FULL, tmp_path / "ims-full-20250901T080000Z-z7.xml")


def test_refuses_an_empty_full_file(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    org = [o for o in stored(objects()) if o.kind != "person"]
    with pytest.raises(FatalError, match="no persons"):
        conn.export(org)
    assert list(tmp_path.iterdir()) == [], "an empty full import would delete every account"


def test_stale_temp_files_are_cleared_at_begin(tmp_path: Path) -> None:
    (tmp_path / ".ims-full-x.xml.123.tmp").write_text("partial")
    (tmp_path / "keep.txt").write_text("not ours")
    connector(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_every_guardian_keeps_their_own_names_in_the_full_file(
    tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    """Guardians wait in a scratch file until their students' sourcedids are known.

    A value held twice in one guardian's record (given and family name the same text,
    one string object, as the source reader and the plan share equal values) is pickled
    once and referred back to. Read back with one Unpickler for every record, such a
    reference named the first guardian's objects: every later guardian so named got the
    first one's family name. Each record must come back as it was written.
    """
    student = {
        "sourcedid": "S1",
        "userid": "s1",
        "given": "Ola",
        "family": "Hansen",
        "fn": "Ola Hansen",
        "email": "s1@skole.no",
        "institutionrole": "Student",
    }
    cur = [StoredObject("person", "S1", "S1", "active", student, None, "s1")]
    for n, name in enumerate(("Berg", "Dahl", "Lie", "Moe"), 1):
        attrs = {
            "sourcedid": f"G{n}",
            "userid": f"g{n}",
            "given": name,
            "family": name,  # the very object of the given name
            "fn": f"{name} {name}",
            "email": f"g{n}@skole.no",
            "institutionrole": "Guest",
            "students": ["S1"],
        }
        cur.append(StoredObject("person", f"G{n}", f"G{n}", "active", attrs, None, f"g{n}"))
    conn = connector(tmp_path)
    conn.export(cur)
    schema.validate(str(conn.written[0]))
    people = persons(parse(conn.written[0]))
    for n, name in enumerate(("Berg", "Dahl", "Lie", "Moe"), 1):
        p = people[f"G{n}"]
        assert p.findtext("i:name/i:n/i:given", namespaces=NS) == name
        assert p.findtext("i:name/i:n/i:family", namespaces=NS) == name
        assert p.findtext("i:name/i:fn", namespaces=NS) == f"{name} {name}"
        assert [sid(r) for r in p.findall("i:extension/i:relationship", NS)] == ["S1"]


def test_a_full_file_only_when_due_and_the_same_delta_either_way(
    tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    """``full_every_hours``: a delta every run, a full file (and latest-full.xml) only when
    the newest is that old; the delta is the same as beside a full file."""
    import time

    def run(folder: Path, run_id: str, when: str, hours: int) -> ItslearningConnector:
        conn = ItslearningConnector(
            ItslearningConfig(full_every_hours=hours),
            OWNER,
            folder,
            clock=lambda: datetime.fromisoformat(when).replace(tzinfo=UTC),
        )
        conn.begin(run_id, lambda kind, key: None)
        return conn

    objs = objects()
    new = [o for o in objs if o.key in ("S1", "5A")]
    before = stored([o for o in objs if o not in new])
    daily, every = tmp_path / "daily", tmp_path / "every"
    first = run(daily, "r1", "2025-09-01T06:00:00", 24)
    first.export(before)
    assert [p.name for p in first.written] == ["ims-full-20250901T060000Z-r1.xml"]

    for folder, hours in ((daily, 24), (every, 0)):
        conn = run(folder, "r2", "2025-09-01T07:00:00", hours)
        for o in new:
            conn.accept(create(o))
            if o.members:
                conn.accept(add_members(o))
        conn.accept(
            Change("itslearning", Op.UPDATE, "person", "T1", "renamed", anchor="T1", attrs={"fn": "Tor"})
        )
        conn.export(before)
        assert conn.written[-1].name == "ims-delta-20250901T070000Z-r2.xml"
        assert len(conn.written) == (1 if hours else 2)
    delta = (daily / "ims-delta-20250901T070000Z-r2.xml").read_bytes()
    assert delta == (every / "ims-delta-20250901T070000Z-r2.xml").read_bytes()
    schema.validate(str(daily / "ims-delta-20250901T070000Z-r2.xml"))
    d = parse(daily / "ims-delta-20250901T070000Z-r2.xml")
    assert persons(d)["S1"].get("recstatus") == "1" and persons(d)["T1"].get("recstatus") == "2"
    assert not list(daily.glob("ims-full-*-r2.xml"))
    assert os.path.samefile(daily / LATEST_FULL, daily / "ims-full-20250901T060000Z-r1.xml")

    quiet = run(daily, "r3", "2025-09-01T08:00:00", 24)
    quiet.export(before)  # nothing changed, no full file due: nothing written
    assert quiet.written == [] and not list(daily.glob("*-r3.xml"))

    day_old = time.time() - 24 * 3600 - 60
    os.utime(daily / "ims-full-20250901T060000Z-r1.xml", (day_old, day_old))
    due = run(daily, "r4", "2025-09-02T06:00:00", 24)
    due.export(before)
    assert [p.name for p in due.written] == ["ims-full-20250902T060000Z-r4.xml"]
    assert os.path.samefile(daily / LATEST_FULL, daily / "ims-full-20250902T060000Z-r4.xml")
    schema.validate(str(daily / LATEST_FULL))


def test_a_delta_alone_is_not_refused_for_a_target_without_persons(tmp_path: Path) -> None:
    """The refusal of an empty full file guards the full import; a delta removes only what it names."""
    groups_only = stored([o for o in objects() if o.kind != "person"])
    (tmp_path / "ims-full-20250901T050000Z-r0.xml").write_text("<enterprise/>", encoding="utf-8")
    conn = ItslearningConnector(ItslearningConfig(full_every_hours=24), OWNER, tmp_path)
    conn.begin("r1", lambda kind, key: None)
    conn.accept(Change("itslearning", Op.UPDATE, "group", "5A", "x", anchor="5A", attrs={"name": "5 A"}))
    conn.export(groups_only)
    assert [p.name.startswith("ims-delta-") for p in conn.written] == [True]
    with pytest.raises(FatalError, match="refusing to write an empty full file"):
        every = ItslearningConnector(ItslearningConfig(), OWNER, tmp_path / "every")
        every.begin("r1", lambda kind, key: None)
        every.export(groups_only)


def test_a_delta_alone_reads_only_what_it_names_and_is_the_delta_beside_a_full_file(
    tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    """Without a full file the delta's objects are read by key (two rounds: what the changes
    name, then what their records refer to): the file is byte for byte the one written from
    every object, though sourcedids (NINs here) differ from keys and nothing is resolved."""
    objs = objects(nin_as_sourcedid=True)
    before = stored(objs)
    guardian = {"sourcedid": "NEWG", "userid": "ng", "fn": "Ny Verge", "given": "Ny", "family": "Verge"}
    guardian |= {"email": "ng@skole.no", "institutionrole": "Guest", "students": ["S1", "SE"]}
    group = {"sourcedid": "NEW", "name": "Ny", "school": "NORDBY", "grouptype": "Basisgruppe"}
    changes = [
        Change("itslearning", Op.UPDATE, "person", "G1", "renamed", anchor="G1", attrs={"fn": "G Én"}),
        Change("itslearning", Op.CREATE, "person", "NEWG", "new", attrs=guardian),
        Change("itslearning", Op.DELETE, "person", "G2", "left", anchor="G2"),
        Change("itslearning", Op.UPDATE, "group", "5A", "renamed", anchor="5A", attrs={"name": "5 A"}),
        Change("itslearning", Op.CREATE, "group", "NEW", "new", attrs=group, members=(("T1", "02"),)),
    ]
    joins = ((Op.ADD_MEMBERS, (("SE", "01"),)), (Op.REMOVE_MEMBERS, (("G2", "06"), ("X9", "01"))))
    changes += [
        Change("itslearning", op, "group", "5A-KL", "moved", anchor="5A-KL", members=m) for op, m in joins
    ]
    asked: list[set[str]] = []

    def unread() -> Iterator[StoredObject]:
        raise AssertionError("a delta alone must not read every stored object")
        yield

    def some(keys):  # noqa: ANN001, ANN202 - the StoredLookup protocol
        asked.append(set(keys))
        return [o for o in before if o.key in keys]

    written = {}
    for folder, hours in (("every", 0), ("daily", 24)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ims-full-20250901T050000Z-r0.xml").write_text("<enterprise/>", encoding="utf-8")
        conn = ItslearningConnector(
            ItslearningConfig(full_every_hours=hours, nin_as_sourcedid=True),
            OWNER,
            tmp_path / folder,
            clock=lambda: datetime(2025, 9, 1, 6, tzinfo=UTC),
        )
        conn.begin("r1", lambda kind, key: None)
        for c in changes:
            conn.accept(c)
        conn.export(before if hours == 0 else unread(), some)
        written[folder] = conn.written[-1].read_bytes()
        schema.validate(str(conn.written[-1]))
    assert written["daily"] == written["every"]
    assert asked == [
        {"G1", "NEWG", "G2", "5A", "NEW", "5A-KL", "SE", "X9", "T1", "org"},
        {"S1", "NORDBY"},
    ], "what the changes name, then what their records refer to (students, the groups' school)"
    assert "A1" not in set().union(*asked) and "MIX" not in set().union(*asked), "nothing else is read"
    assert b"01010012356" in written["daily"], "a student's sourcedid (a NIN), read in the second round"
