"""The PIFU-IMS mapping: table-driven over tiny hand-written exports, and the pure rules behind it.

Every case writes one small document (tests/pifudoc.py), reads it with the streaming
reader and checks the canonical records it gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config import UsernameConfig
from provisioner.core.derive import IdentityView, derive
from provisioner.core.model import Employment, Group, GroupMembership, Guardianship, Person, StudentEnrollment
from sources.base import SourceError
from sources.pifu import mapping
from sources.pifu.reader import read_export
from sources.pifu.vocabulary import code_of_grade, grade_of_code
from tests.pifudoc import (
    OWNER_ORG,
    doc,
    group,
    guardian_of,
    member,
    membership,
    owner_and_school,
    person,
    role,
    sid,
    write,
)
from tests.sisbuilder import bad_check_digit, synthetic_nin

AS_OF = "2025-10-01"


def read(tmp: Path, *records: str, **kw: object):  # type: ignore[no-untyped-def]
    snap, _info = read_export(write(tmp, doc(*records)), owner_org=OWNER_ORG, **kw)  # type: ignore[arg-type]
    return snap


# -- pure rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "given", "family", "middle"),
    [
        ("Ola Johan Nordmann", "Ola", "Nordmann", "Johan"),
        ("Ola Nordmann", "Ola", "Nordmann", None),
        ("Ola Johan Olsen Nordmann", "Ola", "Nordmann", "Johan Olsen"),
        ("Kari Anne Berg", "Kari Anne", "Berg", None),  # a double given name
        ("Nordmann, Ola", "Ola", "Nordmann", None),  # another order: no middle name guessed
        ("A A", "A", "A", None),
        ("", "Ola", "Nordmann", None),
        ("Ola Johan Nordmann", None, "Nordmann", None),
    ],
)
def test_middle_name_is_what_fn_has_between_given_and_family(
    fn: str, given: str | None, family: str, middle: str | None
) -> None:
    assert mapping.middle_name(fn, given, family) == middle


@pytest.mark.parametrize(
    ("grades", "adult", "level"),
    [
        ([1, 2, 7], False, "primary"),
        ([8, 9, 10], False, "lower_secondary"),
        ([1, 5, 8, 10], False, "combined"),
        ([11, 12, 13], False, "upper_secondary"),
        ([10, 11, 11, 12], False, "upper_secondary"),  # a few grunnskole grades at a VGS
        ([7, 8, 9, 11], False, "combined"),
        ([], True, "adult"),
        ([], False, None),
        ([3], True, "primary"),  # grades tell more than the pupil status
        ([0, 14], False, None),  # no Grep year
    ],
)
def test_school_level_from_grades(grades: list[int], adult: bool, level: str | None) -> None:
    assert mapping.school_level(grades, adult) == level


@pytest.mark.parametrize(
    ("code", "grade"),
    [
        ("aarstrinn1", 1),
        ("aarstrinn10", 10),
        ("AARSTRINN7", 7),
        ("http://psi.udir.no/laereplan/aarstrinn/aarstrinn5", 5),
        ("vg1", 11),
        ("http://psi.udir.no/laereplan/aarstrinn/vg3", 13),
        (" vg2 ", 12),
        ("aarstrinn11", None),
        ("aarstrinn0", None),
        ("vg4", None),
        ("MAT0010", None),
        ("uuid:vg1", None),
    ],
)
def test_grade_of_a_grep_code(code: str, grade: int | None) -> None:
    assert grade_of_code(code) == grade
    if grade is not None:
        assert grade_of_code(code_of_grade(grade)) == grade


# -- persons ---------------------------------------------------------------------------------


def test_person_fields(tmp_path: Path) -> None:
    nin = synthetic_nin("2012-03-04")
    snap = read(
        tmp_path,
        person(
            "P1", "Ola", "Nordmann", fn="Ola Johan Nordmann", nin=nin, bday="2012-03-04",
            email="ola@example.no", tels=(("1", "+4722000000"), ("3", "+4791234567")),
        ),
    )  # fmt: skip
    assert snap.persons == (
        Person("P1", nin, "Ola", "Johan", "Nordmann", "2012-03-04", "ola@example.no", "+4791234567"),
    )


def test_persons_without_nin_come_through_with_none(tmp_path: Path) -> None:
    snap = read(tmp_path, person("P1"), person("P2", nin=synthetic_nin("2011-01-01")))
    assert [p.nin is None for p in snap.persons] == [True, False]
    d = derive(snap, AS_OF, IdentityView(), UsernameConfig())
    assert not [e for e in d.state.errors if e.record == "person:P1"]  # no NIN is no error


def test_other_userids_are_no_nin(tmp_path: Path) -> None:
    p = person("P1").replace("<name>", '<userid useridtype="studentID">12345678901</userid><name>')
    assert read(tmp_path, p).persons[0].nin is None


def test_guardians_are_contact_persons_of_the_student(tmp_path: Path) -> None:
    nok = '<pifu_hasContactPerson type="nextOfKin">' + sid("X") + "</pifu_hasContactPerson>"
    snap = read(
        tmp_path,
        person("G1"),
        person("G2"),
        person("S1", ext=guardian_of("G1") + guardian_of("G2") + nok),
    )
    assert snap.guardianships == (Guardianship("G1", "S1"), Guardianship("G2", "S1"))


def test_blank_names_are_none(tmp_path: Path) -> None:
    p = read(tmp_path, person("P1", " ", "Nordmann", fn="Nordmann")).persons[0]
    assert (p.given_name, p.middle_name, p.family_name) == (None, None, "Nordmann")


# -- schools and groups ----------------------------------------------------------------------


def test_school_and_owner(tmp_path: Path) -> None:
    snap = read(tmp_path, *owner_and_school(), school_levels={"NORD": "primary"})
    assert [tuple(s) for s in snap.schools] == [("NORD", "974000001", "NORDby skole", "NORDBY", "primary")]


def test_a_school_without_a_long_name_is_named_by_its_short_one(tmp_path: Path) -> None:
    snap = read(
        tmp_path, group("S", "skole", "S", org="974000002", short="Sørby"), school_levels={"S": "adult"}
    )
    assert (snap.schools[0].name, snap.schools[0].short_name, snap.schools[0].level) == (
        "Sørby",
        "Sørby",
        "adult",
    )


@pytest.mark.parametrize(
    ("typevalue", "codes", "kind", "grade", "subject"),
    [
        ("basisgruppe", ("aarstrinn6",), "basis", 6, None),
        ("undervisningsgruppe", ("aarstrinn6", "MAT0006"), "teaching", 6, "MAT0006"),
        ("undervisningsgruppe", ("MAT1019", "vg1"), "teaching", 11, "MAT1019"),
        ("kontaktlærergruppe", (), "contact", None, None),
        ("undervisningsgruppe", ("http://psi.udir.no/laereplan/aarstrinn/aarstrinn9",), "teaching", 9, None),
    ],
)
def test_group_kinds_grades_and_subjects(
    tmp_path: Path, typevalue: str, codes: tuple[str, ...], kind: str, grade: int | None, subject: str | None
) -> None:
    snap = read(tmp_path, *owner_and_school(), group("G", typevalue, "NORD", short="6A", codes=codes))
    assert snap.groups == (Group("G", "NORD", kind, "6A", subject, grade, "2025-08-15", "2026-06-20"),)


def test_a_group_under_a_trinn_group_belongs_to_the_school_above(tmp_path: Path) -> None:
    snap = read(
        tmp_path,
        *owner_and_school(),
        group("T6", "trinn", "NORD", codes=("aarstrinn6",)),
        group("6A", "basisgruppe", "T6"),
    )
    assert [(g.group_id, g.school_id) for g in snap.groups] == [("6A", "NORD")]


def test_other_group_types_are_ignored(tmp_path: Path) -> None:
    snap = read(
        tmp_path,
        person("S1"),
        *owner_and_school(),
        group("F", "fag", "NORD"),
        group("FG", "foresattegruppe", "NORD"),
        membership("F", member("S1", role("01"))),
    )
    assert snap.groups == () and snap.memberships == ()


def test_group_without_timeframe_reads_as_no_dates_and_the_validator_reports_it(tmp_path: Path) -> None:
    snap = read(tmp_path, *owner_and_school(), group("G", "basisgruppe", "NORD", begin=None, end=None))
    assert (snap.groups[0].start_date, snap.groups[0].end_date) == (None, None)
    d = derive(snap, AS_OF, IdentityView(), UsernameConfig())
    assert [e.kind for e in d.state.errors if e.record == "group:G"] == ["bad_period"]


# -- memberships -----------------------------------------------------------------------------


def test_students_and_employees_at_a_school(tmp_path: Path) -> None:
    snap = read(
        tmp_path,
        *(person(p) for p in ("S1", "T1", "L1", "A1", "A2")),
        *owner_and_school(),
        membership(
            "NORD",
            member("S1", role("01", begin="2020-08-15", primary="1")),
            member("T1", role("02", begin="2019-08-01", end="2026-06-30")),
            member("L1", role("05", begin="2019-08-01"), role("02", begin="2019-08-01")),
            member("A1", role("04", begin="2019-08-01")),
            member("A2", role("07", begin="2019-08-01")),
        ),
        school_levels={"NORD": "primary"},
    )
    assert snap.enrollments == (StudentEnrollment("NORD/S1/1", "S1", "NORD", None, "2020-08-15", None, True),)
    assert snap.employments == (
        Employment("NORD/T1/1", "T1", "NORD", "teacher", "2019-08-01", "2026-06-30"),
        Employment("NORD/L1/1", "L1", "NORD", "leader", "2019-08-01", None),
        Employment("NORD/L1/2", "L1", "NORD", "teacher", "2019-08-01", None),
        Employment("NORD/A1/1", "A1", "NORD", "staff", "2019-08-01", None),
        Employment("NORD/A2/1", "A2", "NORD", "staff", "2019-08-01", None),
    )


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        # (status, end) of each student role -> the (start, end) of the enrollments kept
        ([("1", None)], [("2024-08-15", None)]),
        ([("0", None)], []),  # inactive, no end: when it ended is unknown, no affiliation
        ([("0", "2025-06-20")], [("2024-08-15", "2025-06-20")]),  # inactive with dates: kept as history
    ],
)
def test_inactive_school_roles(tmp_path: Path, roles: list[tuple[str, str | None]], expected: list) -> None:
    snap = read(
        tmp_path,
        person("S1"),
        *owner_and_school(),
        membership(
            "NORD", member("S1", *(role("01", status=s, begin="2024-08-15", end=e) for s, e in roles))
        ),
    )
    assert [(e.start_date, e.end_date) for e in snap.enrollments] == expected


def test_primary_relation_zero_is_not_the_main_school(tmp_path: Path) -> None:
    snap = read(
        tmp_path, person("S1"), *owner_and_school(),
        membership("NORD", member("S1", role("01", begin="2024-08-15", primary="0"))),
    )  # fmt: skip
    assert snap.enrollments[0].main_school is False


def test_grade_and_programme_come_from_trinn_and_programme_groups(tmp_path: Path) -> None:
    old, new = ("2022-08-15", "2025-06-20"), ("2025-08-15", None)
    snap = read(
        tmp_path,
        person("S1"),
        *owner_and_school(),
        group("T10", "trinn", "NORD", codes=("aarstrinn10",)),
        group("VG1", "trinn", "NORD", codes=("vg1",)),
        group("UP", "utdanningsprogram", "NORD", codes=("http://psi.udir.no/kl06/ST",)),
        group("PO", "programområde", "NORD", codes=("uuid:1234",)),
        membership(
            "NORD",
            member("S1", role("01", begin=old[0], end=old[1])),
            member("S1", role("01", begin=new[0])),
        ),
        membership("T10", member("S1", role("01", begin=old[0], end=old[1]))),
        membership("VG1", member("S1", role("01", begin=new[0]))),
        membership("UP", member("S1", role("01", begin=new[0]))),
        membership("PO", member("S1", role("01", begin=new[0]))),
    )
    assert [(e.enrollment_id, e.grade, e.programme, e.programme_area) for e in snap.enrollments] == [
        ("NORD/S1/1", 10, None, None),
        ("NORD/S1/2", 11, "http://psi.udir.no/kl06/ST", "uuid:1234"),
    ]
    assert snap.schools[0].level == "upper_secondary"  # vg1 outweighs nothing: 10 and 11 once each


def test_a_single_placement_with_another_time_frame_still_gives_the_grade(tmp_path: Path) -> None:
    snap = read(
        tmp_path,
        person("S1"),
        *owner_and_school(),
        group("T6", "trinn", "NORD", codes=("aarstrinn6",)),
        membership("NORD", member("S1", role("01", begin="2020-08-15"))),
        membership("T6", member("S1", role("01"))),
    )
    assert snap.enrollments[0].grade == 6 and snap.schools[0].level == "primary"


def test_group_memberships(tmp_path: Path) -> None:
    snap = read(
        tmp_path,
        person("S1"),
        person("T1"),
        *owner_and_school(),
        group("6A", "basisgruppe", "NORD"),
        membership(
            "6A",
            member("S1", role("01")),
            member("T1", role("02"), role("06")),
            member("T1", role("01", status="0")),  # inactive: no membership
        ),
        membership("NOSUCH", member("S1", role("01"))),  # kept: derive reports the unknown group
    )
    assert snap.memberships == (
        GroupMembership("6A", "S1", "student"),
        GroupMembership("6A", "T1", "teacher"),
        GroupMembership("NOSUCH", "S1", "student"),
    )


def test_adult_education_school(tmp_path: Path) -> None:
    snap = read(
        tmp_path,
        person("S1", ext='<pifu_status type="pupilStatus">voksen</pifu_status>'),
        *owner_and_school(),
        membership("NORD", member("S1", role("01", begin="2025-08-15"))),
    )
    assert snap.schools[0].level == "adult"


def test_a_school_with_nothing_to_tell_its_level_by_takes_the_fallback(tmp_path: Path) -> None:
    assert read(tmp_path, *owner_and_school()).schools[0].level == mapping.FALLBACK_LEVEL


# -- records a schema-valid export may hold that the validator reports --------------------------


def test_bad_records_in_a_valid_export_are_data_errors(tmp_path: Path) -> None:
    good = synthetic_nin("2012-03-04")
    snap = read(
        tmp_path,
        person("S1", nin=good),
        person("S2", nin=bad_check_digit(synthetic_nin("2012-03-05"))),
        person("S3", nin="12345"),
        *owner_and_school(),
        group("6A", "basisgruppe", "NORD", codes=("aarstrinn6",)),
        membership(
            "NORD",
            *(member(p, role("01", begin="2025-08-15")) for p in ("S1", "S2", "S3")),
            member("GHOST", role("01", begin="2025-08-15")),
            member("S1", role("02")),  # an employment without a start
        ),
        membership("6A", member("S1", role("01")), member("GHOST2", role("01"))),
    )
    d = derive(snap, AS_OF, IdentityView(), UsernameConfig())
    kinds = {(e.kind, e.record) for e in d.state.errors}
    assert ("invalid_nin", "person:S2") in kinds and ("invalid_nin", "person:S3") in kinds
    assert ("unknown_person", "enrollment:NORD/GHOST/1") in kinds
    assert ("bad_period", "employment:NORD/S1/1") in kinds
    assert any(k == "unknown_person" and "GHOST2" in r for k, r in kinds)
    assert "S2" not in d.state.persons and "S3" not in d.state.persons


# -- exports that are refused as a whole -----------------------------------------------------------


def _refused(tmp: Path, text: str, *, name: str = "export.xml") -> str:
    path = write(tmp, text, name)
    with pytest.raises(SourceError) as info:
        read_export(path, owner_org=OWNER_ORG)
    msg = str(info.value)
    assert str(path) in msg
    return msg


GOOD = doc(
    person("S1"), *owner_and_school(), membership("NORD", member("S1", role("01", begin="2025-08-15")))
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (GOOD.replace("<fn>Ola Nordmann</fn>", "<fn>Ola & Nordmann</fn>"), r"line 4: not well-formed XML"),
        (GOOD.replace("</fn>", "</fm>"), r"line 4: not well-formed XML.*mismatch"),
        (GOOD[: len(GOOD) // 2], r"not well-formed XML"),
        (GOOD.replace("</enterprise>\n", ""), r"not well-formed XML"),
        (GOOD + "<enterprise/>", r"not well-formed XML.*Extra content"),
        ("", r"not well-formed XML"),
        (GOOD.replace("<name>", "<bogus/><name>"), r"line 4: not a valid PIFU-IMS 1.2 .*'bogus'"),
        (GOOD.replace("<n><family>Nordmann</family><given>Ola</given></n>", ""), r"line 4: not a.*'name'"),
        (GOOD.replace("<sourcedid><source>test</source><id>NORD</id></sourcedid>", "", 1), r"not a valid"),
        (GOOD.replace("2025-08-15</begin>", "2025-13-15</begin>"), r"line 5: not a valid.*'2025-13-15'"),
        (GOOD.replace('roletype="01"', 'roletype="99"'), r"not a valid PIFU-IMS"),
        (GOOD.replace("<enterprise xmlns", "<enterprise xmlns:x"), r"not a valid PIFU-IMS"),
    ],
    ids=[
        "bare-ampersand", "mismatched-tag", "truncated-half", "truncated-end", "extra-root", "empty",
        "wrong-element", "missing-n", "group-without-id", "bad-date", "bad-roletype", "no-namespace",
    ],
)  # fmt: skip
def test_malformed_truncated_or_invalid_exports_are_refused_whole(
    tmp_path: Path, text: str, reason: str
) -> None:
    import re

    msg = _refused(tmp_path, text)
    assert re.search(reason, msg), msg
    assert "nothing was read" in msg


def test_an_export_cut_short_at_any_byte_is_refused() -> None:
    """Every prefix of a good export is refused: lxml 6 with libxml2 2.14 closes what a
    truncated file left open when a schema is attached, so the reader must not trust it."""
    import tempfile

    body = GOOD.rstrip().encode()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "export.xml"
        for cut in range(len(body)):
            path.write_bytes(body[:cut])
            with pytest.raises(SourceError, match="nothing was read|refused"):
                read_export(path, owner_org=OWNER_ORG)
        path.write_bytes(body)
        assert read_export(path, owner_org=OWNER_ORG)[0].persons


@pytest.mark.parametrize(
    "after",
    ["", "\n", "\n\n  \t\r\n", "<!-- exported by the SIS -->\n", "<?pi x?>\n<!-- a -->",
     "<!--" + "x" * 10_000 + "-->\n"],
    ids=["nothing", "newline", "whitespace", "comment", "pi-and-comment", "comment-longer-than-the-tail"],
)  # fmt: skip
def test_an_export_may_end_with_whitespace_comments_or_pis_after_the_root(tmp_path: Path, after: str) -> None:
    path = write(tmp_path, GOOD.rstrip() + after, "export.xml")
    snap, _ = read_export(path, owner_org=OWNER_ORG)
    assert [p.person_id for p in snap.persons] == ["S1"]


@pytest.mark.parametrize(
    ("tail", "whole"),
    [
        (b"</enterprise>", True),
        (b"</enterprise >\n", True),
        (b"</ims:enterprise>\r\n", True),
        (b"</enterprise><!-- x -->\n<?y z?>", True),
        (b"</enterprise><!-- x -- y -->", False),  # "--" inside a comment is not XML
        (b"</enterprise><!-- x", False),
        (b"</enterprise><?y", False),
        (b"</enterprise>x", False),
        (b"</membership>\n", False),
        (b"</enterpri", False),
        (b"", False),
    ],
)
def test_the_end_of_an_export_is_the_roots_end_tag_then_only_misc(tail: bytes, whole: bool) -> None:
    from sources.pifu.schema import ends_with_root

    assert ends_with_root(tail) is whole


XXE = (
    '<!DOCTYPE enterprise [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
    '<!DOCTYPE enterprise [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>\n',
    '<!-- a comment first -->\n<!DOCTYPE enterprise SYSTEM "http://127.0.0.1:9/x.dtd">\n',
    "<!DOCTYPE enterprise>\n",
)


@pytest.mark.parametrize(
    "head", XXE, ids=["external-entity", "billion-laughs", "external-dtd", "bare-doctype"]
)
def test_a_doctype_is_refused_before_any_entity_is_used(tmp_path: Path, head: str) -> None:
    text = doc(
        person("S1", fn="&xxe;" if "xxe" in head else "&d;" if "&a;" in head else "Ola Nordmann"), head=head
    )
    text = text.replace("&amp;xxe;", "&xxe;").replace("&amp;d;", "&d;")
    msg = _refused(tmp_path, text)
    assert "DOCTYPE" in msg and "root:" not in msg


def test_a_doctype_hidden_from_the_prolog_scan_is_refused_by_the_parser(tmp_path: Path) -> None:
    from sources.pifu import schema

    head = "<!--" + "x" * (70 * 1024) + "-->\n<!DOCTYPE enterprise>\n"  # beyond the prolog scan's reach
    path = write(tmp_path, doc(person("S1"), head=head))
    schema.refuse_doctype(path)  # the scan gives up (no element start within its reach)...
    with pytest.raises(SourceError, match="DOCTYPE"):
        read_export(path, owner_org=OWNER_ORG)  # ...and the parser's docinfo catches it


def test_a_delta_export_is_refused(tmp_path: Path) -> None:
    assert "full exports" in _refused(tmp_path, doc(person("S1"), export_type="delta"))


def test_another_owners_export_is_refused(tmp_path: Path) -> None:
    text = doc(group("OTHER", "skoleeier", "OTHER", org="958935420"))
    assert "another school owner" in _refused(tmp_path, text)


def test_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read the export"):
        read_export(tmp_path / "nope.xml")


def test_a_refusal_masks_a_nin_it_quotes(tmp_path: Path) -> None:
    nin = synthetic_nin("2012-03-06")
    text = doc(person("S1", tels=(("3", nin),)))  # a NIN where a "+digits" number belongs
    msg = _refused(tmp_path, text)
    assert "not a valid PIFU-IMS" in msg and nin not in msg and nin[:6] + "*****" in msg
