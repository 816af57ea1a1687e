"""Each person's enrollment and employment rows fingerprinted and kept: who changed, and what
they had before (provisioner.core.affiliations), stored beside the certificate."""

from __future__ import annotations

import pytest

from provisioner.core import affiliations, certificate
from provisioner.core.fetched import Converted
from provisioner.core.plan import Plan
from provisioner.state.certificates import AFFILIATIONS, GROUPS
from provisioner.state.store import StateStore
from sources import sql
from tests.sisbuilder import Sis, small_sis
from tests.test_pipeline import DAY1


def _read(sis: Sis) -> Converted:
    return Converted(sis.snapshot())


def _prints(sis: Sis) -> affiliations.GroupPrints:
    prints = affiliations.prints_of(_read(sis))
    assert prints is not None
    return prints


def _left(sis: Sis) -> None:
    sis.end_enrollments("S1", "2025-09-30")


def _moved(sis: Sis) -> None:
    sis.employments = [e._replace(school_id="SOR") if e.person_id == "T1" else e for e in sis.employments]


def _removed(sis: Sis) -> None:
    sis.enrollments = [e for e in sis.enrollments if e.person_id != "S5"]


def _came(sis: Sis) -> None:
    sis.student("N1", "NORD")


def _works_too(sis: Sis) -> None:
    sis.employ("G1", "NORD", role="staff")


def _reordered(sis: Sis) -> None:
    sis.enrollments.reverse()  # no one's own rows changed


@pytest.mark.parametrize(
    ("edit", "who"),
    [
        (_left, {"S1"}),
        (_moved, {"T1"}),
        (_removed, {"S5"}),
        (_came, {"N1"}),
        (_works_too, {"G1"}),
        (_reordered, set()),
    ],
)
def test_changed_tells_who_and_what_their_rows_were(edit, who: set[str]) -> None:  # noqa: ANN001
    sis = small_sis()
    was = sis.copy()
    before = _prints(sis)
    edit(sis)
    found = affiliations.changed(before, _read(sis), limit=10)
    assert found is not None
    assert found.persons == who
    for p in who:
        assert found.before[p] == (
            tuple(e for e in was.enrollments if e.person_id == p),
            tuple(e for e in was.employments if e.person_id == p),
        )
    assert found.prints == _prints(sis)  # what the next run compares with


def test_changed_refuses_more_than_the_limit_and_rows_with_no_person() -> None:
    sis = small_sis()
    before = _prints(sis)
    for p in ("S1", "S2", "S3"):
        sis.end_enrollments(p, "2025-09-30")
    assert affiliations.changed(before, _read(sis), limit=2) is None
    assert affiliations.changed(before, _read(sis), limit=3) is not None
    sis.enrollments[0] = sis.enrollments[0]._replace(person_id=None)  # validation reports it
    assert affiliations.prints_of(_read(sis)) is None
    assert affiliations.changed(before, _read(sis), limit=10) is None


def test_a_sql_source_gives_the_fingerprints_of_its_records_whatever_the_driver(source_url: str) -> None:
    """Dates as the driver gives them (PostgreSQL's and MariaDB's date objects) are the
    records' ISO text here: every driver gives the fingerprints the records give."""
    sis = small_sis()
    sis.write(source_url)
    engine = sql.source_engine(source_url)
    try:
        read = sql.fetch(engine)
    finally:
        engine.dispose()
    assert affiliations.prints_of(read) == _prints(sis)


def test_affiliation_fingerprints_are_kept_apart_from_the_membership_ones(store: StateStore) -> None:
    prints = _prints(small_sis())
    store.certificates.save_group_prints({"enrollments": "one"}, prints, AFFILIATIONS)
    assert store.certificates.group_prints({"enrollments": "one"}, AFFILIATIONS) == prints
    assert store.certificates.group_prints({"enrollments": "one"}, GROUPS) is None
    store.certificates.carry_prints({"enrollments": "one"}, {"enrollments": "two"}, which=AFFILIATIONS)
    assert store.certificates.group_prints({"enrollments": "two"}, AFFILIATIONS) == prints
    plan = Plan(run_id="r", created_at="t", as_of=DAY1, cookie={}, targets=())
    store.certificates.save(certificate.Certificate("key", {"enrollments": "two"}, plan))
    assert store.certificates.group_prints({"enrollments": "two"}, AFFILIATIONS) == prints  # its source's
    assert store.certificates.group_prints({"enrollments": "one"}, AFFILIATIONS) is None


def _came_twice(sis: Sis) -> None:
    sis.student("0NEW", "NORD")  # an id that sorts first
    sis.student("N2", "SOR")
    sis.employ("N2", "NORD", role="staff")


@pytest.mark.parametrize("edit", [_came, _came_twice])
def test_changed_among_joiners_is_what_changed_finds(edit) -> None:  # noqa: ANN001
    """When only joiners' rows came, fingerprinting theirs alone finds what fingerprinting
    everyone's does (the incremental run takes this path when the tables prove it)."""
    sis = small_sis()
    before = _prints(sis)
    had = {e.person_id for e in (*sis.enrollments, *sis.employments)}
    edit(sis)
    joined = {e.person_id for e in (*sis.enrollments, *sis.employments)} - had
    assert affiliations.changed_among(before, _read(sis), joined, limit=10) == affiliations.changed(
        before, _read(sis), limit=10
    )
    assert affiliations.changed_among(before, _read(sis), joined, limit=len(joined) - 1) is None
