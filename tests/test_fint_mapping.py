"""The FINT mapping (pure): FINT 3.x HAL entries to the snapshot, and back through the fake's model."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.model import (
    Employment,
    Group,
    GroupMembership,
    Guardianship,
    Person,
    School,
    StudentEnrollment,
)
from sources.fint import mapping as fm
from sources.fint.mapping import fint_date, grade_of
from sources.fint.snapshot import _level, to_snapshot
from tests.fake_fint_model import build, instant
from tests.sisbuilder import small_sis

B = "https://api.felleskomponent.no"


def e(resource: str, sid: str, links: dict[str, list[str]] | None = None, **fields: Any) -> dict[str, Any]:
    """One HAL entry with a systemId self link and links by href."""
    body: dict[str, Any] = {"systemId": {"identifikatorverdi": sid}, **fields}
    body["_links"] = {"self": [{"href": f"{B}/{resource}/systemid/{sid}"}]}
    for rel, hrefs in (links or {}).items():
        body["_links"][rel] = [{"href": h} for h in hrefs]
    return body


def h(resource: str, sid: str) -> str:
    return f"{B}/{resource}/systemid/{sid}"


def person(nin: str | None, given: str, family: str, **links: list[str]) -> dict[str, Any]:
    field, value = ("fodselsnummer", nin) if nin else ("systemid", given)
    body: dict[str, Any] = {
        "fodselsnummer": {"identifikatorverdi": nin} if nin else None,
        "navn": {"fornavn": given, "mellomnavn": None, "etternavn": family},
        "fodselsdato": "2014-03-01T23:00:00Z",
        "kontaktinformasjon": {
            "epostadresse": f"{given.lower()}@example.no",
            "mobiltelefonnummer": "90000000",
        },
        "_links": {"self": [{"href": f"{B}/{fm.ELEV_PERSON}/{field}/{value}"}]},
    }
    for rel, hrefs in links.items():
        body["_links"][rel] = [{"href": x} for x in hrefs]
    return body


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2010-05-16T22:00:00Z", "2010-05-17"),  # summer: Oslo is UTC+2
        ("2010-01-01T23:00:00Z", "2010-01-02"),  # winter: UTC+1
        ("2010-05-17T00:00:00+02:00", "2010-05-17"),
        ("2010-05-17", "2010-05-17"),
        ("2010-05-17T10:00:00", "2010-05-17"),
        (None, None),
        ("", None),
        ("sometime", "sometime"),  # kept as read: the validator reports it
    ],
)
def test_fint_dates_are_norwegian_calendar_days(value: Any, day: Any) -> None:
    assert fint_date(value) == day


@pytest.mark.parametrize(
    ("arstrinn", "grade"),
    [
        ({"navn": "5. trinn"}, 5),
        ({"navn": "10"}, 10),
        ({"systemId": {"identifikatorverdi": "aarstrinn3"}}, 3),
        ({"navn": "Vg2"}, 12),
        ({"navn": "VG3"}, 13),
        (
            {
                "_links": {
                    "grepreferanse": [{"href": "https://data.udir.no/kl06/v201906/aarstrinn/aarstrinn7"}]
                }
            },
            7,
        ),
        ({"navn": "Forkurs"}, "Forkurs"),  # no grade: kept as text for the validator
        ({}, None),
    ],
)
def test_arstrinn_to_grade(arstrinn: dict[str, Any], grade: Any) -> None:
    assert grade_of(arstrinn) == grade


@pytest.mark.parametrize(
    ("grades", "enrolled", "level"),
    [
        ({1, 4, 7}, True, "primary"),
        ({8, 10}, True, "lower_secondary"),
        ({1, 10}, True, "combined"),
        ({11, 13}, True, "upper_secondary"),
        (set(), True, "adult"),
        (set(), False, "combined"),
    ],
)
def test_school_level_from_grades(grades: set[int], enrolled: bool, level: str) -> None:
    assert _level(grades, enrolled) == level


def _small_owner() -> dict[str, list[dict[str, Any]]]:
    """One school, one student with a guardian, a class with its teacher, a VGS programme."""
    skole = e(fm.SKOLE, "S1", organisasjonsnummer={"identifikatorverdi": "974123456"}, navn="Nordby skole",
              skolenummer={"identifikatorverdi": "12345"})  # fmt: skip
    org_links = {"skole": [h(fm.SKOLE, "S1")], "leder": [h(fm.PERSONALRESSURS, "L1")]}
    org = e(fm.ORGANISASJONSELEMENT, "O1", org_links, kortnavn="NORD")
    kid = person(
        "01011400000", "Ola", "Nordmann", foreldre=[f"{B}/{fm.ELEV_PERSON}/fodselsnummer/02027000000"]
    )
    mum = person(
        "02027000000", "Kari", "Nordmann", foreldreansvar=[f"{B}/{fm.ELEV_PERSON}/fodselsnummer/01011400000"]
    )
    teacher = person("03038000000", "Per", "Lærer")
    teacher["_links"]["self"] = [{"href": f"{B}/{fm.PERSONAL_PERSON}/fodselsnummer/03038000000"}]
    boss = person("04048000000", "Rita", "Rektor")
    boss["_links"]["self"] = [{"href": f"{B}/{fm.PERSONAL_PERSON}/fodselsnummer/04048000000"}]
    return {
        fm.SKOLE: [skole],
        fm.ORGANISASJONSELEMENT: [org],
        fm.ARSTRINN: [e(fm.ARSTRINN, "vg1", navn="Vg1")],
        fm.UTDANNINGSPROGRAM: [e(fm.UTDANNINGSPROGRAM, "ST")],
        fm.PROGRAMOMRADE: [
            e(fm.PROGRAMOMRADE, "STSSA1----", {"utdanningsprogram": [h(fm.UTDANNINGSPROGRAM, "ST")]})
        ],
        fm.PROGRAMOMRADEMEDLEMSKAP: [
            e(
                fm.PROGRAMOMRADEMEDLEMSKAP,
                "PM1",
                {
                    "elevforhold": [h(fm.ELEVFORHOLD, "EF1")],
                    "programomrade": [h(fm.PROGRAMOMRADE, "STSSA1----")],
                },
            )
        ],  # fmt: skip
        fm.ELEV_PERSON: [kid, mum],
        fm.PERSONAL_PERSON: [teacher, boss],
        fm.ELEV: [e(fm.ELEV, "P1", {"person": [f"{B}/{fm.ELEV_PERSON}/fodselsnummer/01011400000"]})],
        fm.KONTAKTPERSON: [
            e(fm.KONTAKTPERSON, "G1", {"kontaktperson": [f"{B}/{fm.ELEV_PERSON}/fodselsnummer/02027000000"]})
        ],
        fm.ELEVFORHOLD: [
            e(
                fm.ELEVFORHOLD,
                "EF1",
                {"elev": [h(fm.ELEV, "P1")], "skole": [h(fm.SKOLE, "S1")]},
                gyldighetsperiode={"start": "2025-08-14T22:00:00Z", "slutt": None},
                hovedskole=True,
            )
        ],  # fmt: skip
        fm.BASISGRUPPE: [
            e(
                fm.BASISGRUPPE,
                "B1",
                {"skole": [h(fm.SKOLE, "S1")], "trinn": [h(fm.ARSTRINN, "vg1")]},
                navn="1STA",
                periode=[{"start": "2025-08-14T22:00:00Z", "slutt": "2026-06-19T22:00:00Z"}],
            )
        ],  # fmt: skip
        fm.BASISGRUPPEMEDLEMSKAP: [
            e(
                fm.BASISGRUPPEMEDLEMSKAP,
                "BM1",
                {"basisgruppe": [h(fm.BASISGRUPPE, "B1")], "elevforhold": [h(fm.ELEVFORHOLD, "EF1")]},
            )
        ],  # fmt: skip
        fm.UNDERVISNINGSGRUPPE: [
            e(
                fm.UNDERVISNINGSGRUPPE,
                "T1",
                {"skole": [h(fm.SKOLE, "S1")], "fag": [h(fm.FAG, "f1")]},
                navn="NOR 1STA",
                periode=[{"start": "2025-08-14T22:00:00Z", "slutt": "2026-06-19T22:00:00Z"}],
            )
        ],  # fmt: skip
        fm.UNDERVISNINGSGRUPPEMEDLEMSKAP: [
            e(
                fm.UNDERVISNINGSGRUPPEMEDLEMSKAP,
                "TM1",
                {
                    "undervisningsgruppe": [h(fm.UNDERVISNINGSGRUPPE, "T1")],
                    "elevforhold": [h(fm.ELEVFORHOLD, "EF1")],
                },
            )
        ],  # fmt: skip
        fm.FAG: [e(fm.FAG, "f1", {"grepreferanse": ["https://data.udir.no/kl06/v201906/fagkoder/NOR1260"]})],
        fm.PERSONALRESSURS: [
            e(fm.PERSONALRESSURS, "T1P", {"person": [f"{B}/{fm.PERSONAL_PERSON}/fodselsnummer/03038000000"]}),
            e(fm.PERSONALRESSURS, "L1", {"person": [f"{B}/{fm.PERSONAL_PERSON}/fodselsnummer/04048000000"]}),
        ],
        fm.SKOLERESSURS: [e(fm.SKOLERESSURS, "SR1", {"personalressurs": [h(fm.PERSONALRESSURS, "T1P")]})],
        fm.UNDERVISNINGSFORHOLD: [
            e(
                fm.UNDERVISNINGSFORHOLD,
                "U1",
                {
                    "skoleressurs": [h(fm.SKOLERESSURS, "SR1")],
                    "basisgruppe": [h(fm.BASISGRUPPE, "B1")],
                    "undervisningsgruppe": [h(fm.UNDERVISNINGSGRUPPE, "T1")],
                },
            )
        ],  # fmt: skip
        fm.ARBEIDSFORHOLD: [
            e(
                fm.ARBEIDSFORHOLD,
                "A1",
                {
                    "personalressurs": [h(fm.PERSONALRESSURS, "T1P")],
                    "arbeidssted": [h(fm.ORGANISASJONSELEMENT, "O1")],
                    "undervisningsforhold": [h(fm.UNDERVISNINGSFORHOLD, "U1")],
                },
                gyldighetsperiode={"start": "2020-07-31T22:00:00Z", "slutt": None},
            ),
            e(
                fm.ARBEIDSFORHOLD,
                "A2",
                {
                    "personalressurs": [h(fm.PERSONALRESSURS, "L1")],
                    "arbeidssted": [h(fm.ORGANISASJONSELEMENT, "O1")],
                },
                arbeidsforholdsperiode={"start": "2019-07-31T22:00:00Z", "slutt": "2026-07-30T22:00:00Z"},
            ),
        ],  # fmt: skip
    }


def test_a_small_owner_maps_field_by_field() -> None:
    snap, dropped = to_snapshot(_small_owner())
    assert not dropped
    assert snap.schools == (School("S1", "974123456", "Nordby skole", "NORD", "upper_secondary"),)
    assert (
        Person("P1", "01011400000", "Ola", None, "Nordmann", "2014-03-02", "ola@example.no", "90000000")
        in snap.persons
    )
    assert {p.person_id for p in snap.persons} == {"P1", "G1", "T1P", "L1"}
    assert snap.enrollments == (
        StudentEnrollment("EF1", "P1", "S1", 11, "2025-08-15", None, True, "ST", "STSSA1----"),
    )
    assert snap.guardianships == (Guardianship("G1", "P1"),)
    assert snap.groups == (
        Group("B1", "S1", "basis", "1STA", None, 11, "2025-08-15", "2026-06-20"),
        Group("T1", "S1", "teaching", "NOR 1STA", "NOR1260", 11, "2025-08-15", "2026-06-20"),
    )
    assert set(snap.memberships) == {
        GroupMembership("B1", "P1", "student"), GroupMembership("T1", "P1", "student"),
        GroupMembership("B1", "T1P", "teacher"), GroupMembership("T1", "T1P", "teacher"),
    }  # fmt: skip
    assert snap.employments == (
        Employment("A1", "T1P", "S1", "teacher", "2020-08-01", None),
        Employment("A2", "L1", "S1", "leader", "2019-08-01", "2026-07-31"),
    )


def test_config_level_wins_over_the_grades() -> None:
    snap, _ = to_snapshot(_small_owner(), {"S1": "adult"})
    assert snap.schools[0].level == "adult"


@pytest.mark.parametrize(
    ("resource", "index", "drop_rel", "dropped_kind"),
    [
        (fm.ELEVFORHOLD, 0, "elev", "elevforhold without systemId, elev or skole"),
        (fm.BASISGRUPPEMEDLEMSKAP, 0, "elevforhold", "basisgruppemedlemskap linking nothing"),
        (fm.ARBEIDSFORHOLD, 0, "arbeidssted", "arbeidsforhold without systemId, person or school"),
        (fm.UNDERVISNINGSGRUPPE, 0, "skole", "undervisningsgruppe without systemId or skole"),
    ],
)
def test_entries_linking_nothing_are_dropped_and_counted(
    resource: str, index: int, drop_rel: str, dropped_kind: str
) -> None:
    data = _small_owner()
    del data[resource][index]["_links"][drop_rel]
    snap, dropped = to_snapshot(data)
    assert dropped[dropped_kind] >= 1
    assert snap.persons  # the rest is mapped


def test_missing_fields_become_none_for_the_validator() -> None:
    data = _small_owner()
    del data[fm.ELEV_PERSON][0]["navn"]
    del data[fm.ELEVFORHOLD][0]["gyldighetsperiode"]
    snap, _ = to_snapshot(data)
    p1 = next(p for p in snap.persons if p.person_id == "P1")
    assert (p1.given_name, p1.family_name) == (None, None)
    assert snap.enrollments[0].start_date is None


def test_a_person_nobody_names_gets_a_stable_synthesized_id() -> None:
    data = _small_owner()
    data[fm.KONTAKTPERSON] = []
    one, _ = to_snapshot(data)
    two, _ = to_snapshot(data)
    ids = {p.person_id for p in one.persons} - {"P1", "T1P", "L1"}
    assert len(ids) == 1 and next(iter(ids)).startswith("fint-")
    assert one == two
    assert "02027000000" not in next(iter(ids))  # never the NIN


def test_a_person_in_both_domains_is_one_person() -> None:
    data = _small_owner()
    # the teacher is also the student's guardian: an utdanning person with the same NIN
    data[fm.ELEV_PERSON].append(
        person(
            "03038000000", "Per", "Lærer", foreldreansvar=[f"{B}/{fm.ELEV_PERSON}/fodselsnummer/01011400000"]
        )
    )
    snap, _ = to_snapshot(data)
    assert [p.person_id for p in snap.persons].count("T1P") == 1
    assert Guardianship("T1P", "P1") in snap.guardianships


def test_round_trip_through_the_fakes_model_keeps_the_small_sis() -> None:
    sis = small_sis()
    snap = sis.snapshot()
    back, dropped = to_snapshot({r: list(v.values()) for r, v in build(B, snap).items()})
    assert not dropped
    for table in ("persons", "employments", "guardianships", "memberships"):
        assert set(getattr(back, table)) == set(getattr(snap, table)), table
    assert {g.group_id for g in back.groups} == {g.group_id for g in snap.groups}


@settings(max_examples=50, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_instants_written_by_the_fake_read_back_as_the_same_day(day: dt.date) -> None:
    assert fint_date(instant(day.isoformat())) == day.isoformat()


def test_the_config_knows_every_resource_the_mapping_reads() -> None:
    from provisioner.source_config import FINT_RESOURCES

    assert FINT_RESOURCES == fm.RESOURCES


def test_an_unknown_resource_allowed_to_be_empty_is_a_config_error_naming_the_key() -> None:
    from pydantic import ValidationError

    from provisioner.source_config import validate_source

    table = {
        "kind": "fint", "base_url": "https://api.example.no", "token_url": "https://idp.example.no/token",
        "client_id": "c", "client_secret_file": "s", "username": "u", "password_file": "p",
        "may_be_empty": ["utdanning/elev/nosuch"],
    }  # fmt: skip
    with pytest.raises(ValidationError, match="may_be_empty") as err:
        validate_source(table)
    assert "utdanning/elev/nosuch" in str(err.value)
    table["may_be_empty"] = ["/utdanning/elev/kontaktperson/"]
    assert validate_source(table).may_be_empty == ["utdanning/elev/kontaktperson"]


@pytest.mark.parametrize("bad", ["Ola Nordmann", ["Ola"], 17, None])
def test_a_malformed_complex_field_is_none_not_a_crash(bad: Any) -> None:
    data = _small_owner()
    data[fm.ELEV_PERSON][0]["navn"] = bad
    data[fm.ELEV_PERSON][0]["kontaktinformasjon"] = bad
    data[fm.ELEVFORHOLD][0]["gyldighetsperiode"] = bad
    snap, _ = to_snapshot(data)
    p1 = next(p for p in snap.persons if p.person_id == "P1")
    assert (p1.given_name, p1.email) == (None, None)


_SMALL = small_sis().snapshot()
_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(
    gone=st.sets(st.sampled_from([p.person_id for p in _SMALL.persons])),
    renames=st.dictionaries(st.sampled_from([p.person_id for p in _SMALL.persons]), _names),
    no_nin=st.sets(st.sampled_from([p.person_id for p in _SMALL.persons])),
)
def test_whatever_the_fake_serves_reads_back_the_same(
    gone: set[str], renames: dict[str, str], no_nin: set[str]
) -> None:
    """Persons, roles, guardians and memberships survive FINT's shape for any small owner."""
    s = _SMALL
    persons = tuple(
        p._replace(
            family_name=renames.get(p.person_id, p.family_name), nin=None if p.person_id in no_nin else p.nin
        )
        for p in s.persons
        if p.person_id not in gone
    )
    snap = dataclasses.replace(
        s,
        persons=persons,
        enrollments=tuple(e for e in s.enrollments if e.person_id not in gone),
        employments=tuple(e for e in s.employments if e.person_id not in gone),
        guardianships=tuple(g for g in s.guardianships if not {g.guardian_id, g.student_id} & gone),
        memberships=tuple(m for m in s.memberships if m.person_id not in gone),
    )
    back, dropped = to_snapshot({r: list(v.values()) for r, v in build(B, snap).items()})
    assert not dropped
    # A person with no role left (a guardian whose only student is gone) is in no FINT resource
    # that carries an id: the reader synthesizes one (see the mapping's list of what FINT cannot carry).
    roles = {e.person_id for e in snap.enrollments} | {e.person_id for e in snap.employments}
    roles |= {g.guardian_id for g in snap.guardianships}
    assert {p for p in back.persons if p.person_id in roles} == {
        p for p in snap.persons if p.person_id in roles
    }
    assert all(p.person_id.startswith("fint-") for p in back.persons if p.person_id not in roles)
    for table in ("employments", "guardianships", "memberships"):
        assert set(getattr(back, table)) == set(getattr(snap, table)), table
    # FINT has no school level: it is derived from the grades (small_sis says "combined" for grade 6)
    assert {sc._replace(level="") for sc in back.schools} == {sc._replace(level="") for sc in snap.schools}
