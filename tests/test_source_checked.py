"""What a read finds out about its key columns is kept for reads of the same rows (and only those)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sources.sql as sql
from provisioner.run import checked, runner
from provisioner.state.store import StateStore
from sources.sql import read_unless, source_engine
from tests.sisbuilder import small_sis
from tests.test_pipeline import DAY1, Env

# SQLite gives a column integers and text alike: S1's membership rows then hold 17, a number.
NUMBER_FOR_S1 = {
    "memberships": "SELECT group_id, CASE WHEN person_id = 'S1' THEN 17 ELSE person_id END AS person_id,"
    " role FROM group_membership"
}


@pytest.fixture
def engine(tmp_path: Path):  # noqa: ANN201
    url = f"sqlite:///{tmp_path / 'sis.db'}"
    small_sis().write(url)
    return source_engine(url)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    real = sql._key_conversion

    def counted(name: str, column: str, keys):  # noqa: ANN001, ANN202
        calls.append((name, column))
        return real(name, column, keys)

    monkeypatch.setattr(sql, "_key_conversion", counted)
    return calls


def _read(engine, queries=None):  # noqa: ANN001, ANN202
    read = read_unless(engine, queries, {})
    assert read is not None
    return read


def test_a_read_of_the_same_rows_takes_what_an_earlier_one_found(engine, monkeypatch) -> None:  # noqa: ANN001
    first = _read(engine)
    want = first.where("memberships", "person_id", {"S2"})
    found = first.checked()
    assert found["memberships"] == [first.digests["memberships"], {"person_id": "_str"}]
    calls = _counting(monkeypatch)
    again = _read(engine)
    again.assume_checked(found)
    assert again.where("memberships", "person_id", {"S2"}) == want
    assert calls == []  # not checked again: the same digest, the same types
    again.where("memberships", "group_id", {"G-NORD-1A"})
    assert calls == [("memberships", "group_id")]  # a column not found before is checked


def test_a_table_whose_rows_changed_is_checked_again(engine, monkeypatch) -> None:  # noqa: ANN001
    """The digest is of the values and their types: a number where text was is another digest,
    so what the text ids' read found is not taken, and the number is converted as the record holds it."""
    first = _read(engine)
    first.where("memberships", "person_id", {"S1"})
    calls = _counting(monkeypatch)
    numbers = _read(engine, NUMBER_FOR_S1)
    assert numbers.digests["memberships"] != first.digests["memberships"]
    numbers.assume_checked(first.checked())
    got = numbers.where("memberships", "person_id", {"17"})
    assert set(calls) == {("memberships", "person_id")}  # checked (then converted)
    assert got and {m.person_id for m in got} == {"17"}


@pytest.mark.parametrize(
    "known",
    [
        {"memberships": "junk"},
        {"memberships": ["digest", "junk"]},
        {"memberships": ["not this read's digest", {"person_id": "_str"}]},
        {"nosuchtable": ["x", {"person_id": "_str"}]},
    ],
)
def test_what_is_not_an_earlier_reads_finding_for_these_rows_is_not_taken(engine, monkeypatch, known) -> None:  # noqa: ANN001
    calls = _counting(monkeypatch)
    read = _read(engine)
    read.assume_checked(known)
    read.where("memberships", "person_id", {"S1"})
    assert calls == [("memberships", "person_id")]


def test_a_finding_under_another_conversion_is_not_taken(engine, monkeypatch) -> None:  # noqa: ANN001
    """The code may have changed since: a column then converted otherwise is checked again."""
    read = _read(engine)
    calls = _counting(monkeypatch)
    read.assume_checked({"memberships": [read.digests["memberships"], {"person_id": "_int"}]})
    read.where("memberships", "person_id", {"S1"})
    assert calls == [("memberships", "person_id")]


def test_the_store_keeps_the_findings_of_the_rows_as_they_are_now(engine, tmp_path) -> None:  # noqa: ANN001
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store.meta.set(checked.KEY, "not json")
        read = _read(engine)
        assert checked.assumed(store, read) == {}
        read.where("memberships", "person_id", {"S1"})
        read.person_rows()
        checked.keep(store, read, {})
        kept = json.loads(store.meta.get(checked.KEY) or "")
        assert kept == {
            "memberships": [read.digests["memberships"], {"person_id": "_str"}],
            "persons": [read.digests["persons"], {"person_id": "_str"}],
        }
        # The next read: memberships changed (S1's ids are numbers now: not as read, so not
        # kept), persons did not (kept); what it finds (groups) joins what still holds.
        numbers = _read(engine, NUMBER_FOR_S1)
        known = checked.assumed(store, numbers)
        numbers.where("groups", "group_id", {"G-NORD-1A"})
        checked.keep(store, numbers, known)
        kept = json.loads(store.meta.get(checked.KEY) or "")
        assert kept == {
            "groups": [numbers.digests["groups"], {"group_id": "_str"}],
            "persons": [read.digests["persons"], {"person_id": "_str"}],
        }
    finally:
        store.close()


def test_a_patched_run_keeps_what_its_read_found_and_the_next_checks_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path, small_sis())
    try:
        assert env.sync(DAY1).exit_code == runner.EXIT_OK
        env.sis.update_person("T1", family_name="Lærer-Berg")
        out = env.sync(DAY1)
        assert out.plan is not None and out.plan.basis == "incremental"
        kept = json.loads(env.store.meta.get(checked.KEY) or "")
        digests = out.plan.source_digests
        assert kept["persons"] == [digests["persons"], {"person_id": "_str"}]
        assert kept["memberships"] == [digests["memberships"], {"group_id": "_str", "person_id": "_str"}]
        calls = _counting(monkeypatch)
        env.sis.update_person("T1", family_name="Lærer-Dahl")  # only the persons table changes
        again = env.sync(DAY1)
        assert again.plan is not None and again.plan.basis == "incremental"
        assert calls and set(calls) <= {("persons", "person_id")}
    finally:
        env.store.close()
