"""Sealed NINs: the seal, sealing attributes, the store's key, and the book that gives a seal back whole."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from connectors.errors import RejectedError
from connectors.nins import NinReader, NinWriter
from provisioner.core import nin as nins
from provisioner.core.nin_seal import NinSeal, is_sealed, sealed_attrs
from provisioner.state import nins as book_module
from provisioner.state import schema as t
from provisioner.state.nins import KEY, NinBook, nin_seal
from provisioner.state.store import StateStore
from tests.sisbuilder import synthetic_nin

NIN = synthetic_nin("2011-02-03")


def _nins(n: int, start: dt.date = dt.date(2010, 1, 1)) -> list[str]:
    """``n`` valid synthetic NINs, one per day from ``start`` (so each has its own six digits)."""
    out: list[str] = []
    day = start
    while len(out) < n:
        got = nins.make_synthetic(day, 123)
        if got:
            out.append(got)
        day += dt.timedelta(days=1)
    return out


def test_a_seal_shows_six_digits_and_no_nin() -> None:
    seal = NinSeal(b"k" * 32)
    s = seal(NIN)
    assert s.startswith(NIN[:6] + "*****~") and len(s) == 6 + 5 + 1 + 30
    assert is_sealed(s) and not is_sealed(NIN) and not is_sealed(NIN[:6] + "*****") and not is_sealed(None)
    assert not re.search(r"[0-9]", s[6:])  # no digit after the six: nothing masking would find
    assert nins.mask_nins(s) == s


def test_equal_nins_equal_seals_under_one_key_and_only_under_it() -> None:
    one, two = NinSeal(b"a" * 32), NinSeal(b"b" * 32)
    a, b = _nins(2)
    assert one(a) == one(a) and one(a) != one(b)
    assert one(a) != two(a)  # without the key, no table of seals can be made
    with pytest.raises(ValueError, match="16 bytes"):
        NinSeal(b"short")


@pytest.mark.parametrize(
    ("attrs", "sealed_names"),
    [
        ({"norEduPersonNIN": NIN, "uid": "ola"}, {"norEduPersonNIN"}),
        ({"norEduPersonNIN": [NIN], "cn": ["Ola"]}, {"norEduPersonNIN"}),  # as a directory gives values
        ({"uid": "12345678901"}, set()),  # eleven digits under another name: not a NIN attribute
        ({"norEduPersonNIN": "1234567890"}, set()),  # ten digits: not a NIN, left as it is
        ({"norEduPersonNIN": None}, set()),
        ({}, set()),
    ],
)
def test_sealed_attrs_seal_whole_nins_of_the_named_attributes_only(attrs: dict, sealed_names: set) -> None:
    seal = NinSeal(b"k" * 32)
    out = sealed_attrs(attrs, ["norEduPersonNIN"], seal)
    if not sealed_names:
        assert out is attrs
        return
    value = out["norEduPersonNIN"]
    assert (value if isinstance(value, str) else value[0]) == seal(NIN)
    assert {k: v for k, v in out.items() if k != "norEduPersonNIN"} == {
        k: v for k, v in attrs.items() if k != "norEduPersonNIN"
    }
    assert sealed_attrs(out, ["norEduPersonNIN"], seal) is out  # a seal is not sealed again


def test_the_stores_key_is_made_once_and_kept(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    try:
        assert store.meta.get(KEY) is None
        first = nin_seal(store)
        key = store.meta.get(KEY)
        assert key is not None and len(bytes.fromhex(key)) == 32
        assert nin_seal(store)(NIN) == first(NIN)
    finally:
        store.close()
    again = StateStore(url)
    try:
        assert nin_seal(again)(NIN) == first(NIN) and again.meta.get(KEY) == key
    finally:
        again.close()


def test_a_key_another_process_stored_first_is_the_key(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        theirs = "ab" * 32
        real = book_module.secrets.token_hex

        def race(n: int) -> str:  # the other process stores its key between our read and our insert
            store.meta.set(KEY, theirs)
            return real(n)

        monkeypatch.setattr(book_module.secrets, "token_hex", race)
        assert nin_seal(store)(NIN) == NinSeal(bytes.fromhex(theirs))(NIN)
        assert store.meta.get(KEY) == theirs
    finally:
        store.close()


def _with_nins(store: StateStore, whole: list[str]) -> None:
    with store.engine.begin() as c:
        c.execute(
            t.person_nins.insert(),
            [{"nin": n, "person_id": f"P{i}", "first_seen": "2025-01-01"} for i, n in enumerate(whole)],
        )


@pytest.mark.parametrize("load_all_after", [200, 0])
def test_the_book_gives_each_seal_its_nin_from_the_historic_base(
    db_url: str, load_all_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By birth date (a range of the key, in any collation) or, past a number of them, all at once."""
    monkeypatch.setattr(book_module, "_LOAD_ALL_AFTER", load_all_after)
    store = StateStore(db_url)
    try:
        whole = _nins(30) + [nins.make_synthetic(dt.date(2010, 1, 1), n) for n in (124, 125, 126)]
        whole = [n for n in whole if n]
        _with_nins(store, whole)
        seal = nin_seal(store)
        book = NinBook(store)
        assert [book(seal(n)) for n in whole] == whole
        gone = _nins(1, dt.date(2015, 5, 5))[0]  # sealed with the key, but not in the historic base
        assert book(seal(gone)) is None
        assert book(NinSeal(b"x" * 32)(whole[0])) is None  # another key's seal
        assert book(whole[0]) is None and book("") is None  # not a seal
        other = next(n for n in whole if n[:6] != whole[0][:6])
        assert book(other[:6] + seal(whole[0])[6:]) is None  # one NIN's digest, another's birth date
    finally:
        store.close()


def test_a_seal_of_the_last_birth_digits_is_found_too(tmp_path) -> None:
    """Six nines have no next six digits: the range is open above."""
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        odd = "99999912345"  # not a valid NIN, but the historic base takes what the SIS gave
        _with_nins(store, [odd])
        assert NinBook(store)(nin_seal(store)(odd)) == odd
        with store.engine.connect() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(t.person_nins)).scalar() == 1
    finally:
        store.close()


class _Writer(NinWriter):
    nin_attrs = frozenset({"norEduPersonNIN"})


class _Reader(NinReader):
    nin_attrs = frozenset({"norEduPersonNIN"})


def test_a_connector_gets_a_seal_back_whole_only_from_its_book() -> None:
    seal = NinSeal(b"k" * 32)
    w = _Writer()
    attrs = {"norEduPersonNIN": seal(NIN), "uid": "ola"}
    with pytest.raises(RejectedError, match="no NIN for " + re.escape(NIN[:6] + "*****~")):
        w.whole_attrs(attrs)  # no book given: refused, never written sealed
    w.use_nin_book(lambda s: {seal(NIN): NIN}.get(s))
    assert w.whole_attrs(attrs) == {"norEduPersonNIN": NIN, "uid": "ola"}
    plain = {"norEduPersonNIN": NIN, "uid": "ola"}  # a change made whole already (a test's, a replay's)
    assert w.whole_attrs(plain) is plain
    with pytest.raises(RejectedError):
        w.whole_attrs({"norEduPersonNIN": NinSeal(b"x" * 32)(NIN)})  # sealed with another key


def test_a_reader_seals_the_nins_it_reads_with_the_seal_it_was_given() -> None:
    seal = NinSeal(b"k" * 32)
    r = _Reader()
    assert r.sealed_live({"norEduPersonNIN": [NIN]}) == {"norEduPersonNIN": [NIN]}  # no seal given
    r.use_nin_seal(seal)
    assert r.sealed_live({"norEduPersonNIN": [NIN]}) == {"norEduPersonNIN": [seal(NIN)]}


def test_a_feide_full_file_without_a_nin_the_historic_base_knows_is_not_written(tmp_path) -> None:
    from connectors.base import StoredObject
    from connectors.errors import FatalError
    from connectors.feide.ldif import FeideLdifConnector
    from provisioner.config import FeideConfig, OwnerConfig
    from provisioner.core.states import ObjectStatus

    owner = OwnerConfig(
        name="Eksempel kommune", org_number="964000000", realm="eksempel.no", mail_domain="e.no"
    )
    exp = FeideLdifConnector(
        FeideConfig(output_dir=str(tmp_path), base_dn="dc=eksempel,dc=no"), owner, tmp_path
    )
    exp.use_nin_book(lambda s: None)
    exp.begin("r1", lambda kind, key: None)
    person = StoredObject(
        "person",
        "S1",
        "uid=ola,ou=people,dc=eksempel,dc=no",
        ObjectStatus.ACTIVE,
        {
            "dn": "uid=ola,ou=people,dc=eksempel,dc=no",
            "uid": "ola",
            "norEduPersonNIN": NinSeal(b"k" * 32)(NIN),
        },
        None,
        "ola",
    )
    with pytest.raises(FatalError, match="person:S1: norEduPersonNIN: the historic base has no NIN"):
        exp.export([person])
    assert not list(tmp_path.glob("feide-full-*.ldif"))
