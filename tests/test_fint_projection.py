"""The slim form of FINT entries (sources/fint/projection.py): the same snapshot, no read dropped.

The mapping is run over the demo owner's entries as the fake FINT serves them, whole and slim;
entries that record every key the mapping reads are checked against ``PROJECTION``; readers
of a slim entry answer as over the full one for any entry (hypothesis); the cache holds the
slim form and a cache of the old format is read in full once, never as the new one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.data import Scale
from provisioner.core.model import SourceSnapshot
from sources.fint import FintSource
from sources.fint import mapping as fm
from sources.fint.cache import FintCache, entry_key
from sources.fint.projection import ID, PERIODE, PROJECTION, RAW_RELATIONS, intern_links, slim
from sources.fint.snapshot import to_snapshot
from tests.fake_fint import FakeFint
from tests.fake_fint_model import build
from tests.fintenv import demo_snapshot, fint_config

SMALL = Scale(1, 1, 1, 1, 1, students=150, employees=30, guardians=220, groups=80, memberships=1_500)
Data = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def demo_entries(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """The demo owner's entries as the fake FINT serves them (through JSON, as they arrive)."""
    _url, snap = demo_snapshot(tmp_path_factory.mktemp("fint-proj"))
    served = build("https://api.felleskomponent.no", snap)
    return {r: json.loads(json.dumps(list(entries.values()))) for r, entries in served.items()}


def slimmed(data: Data) -> Data:
    return {r: [slim(r, e) for e in entries] for r, entries in data.items()}


def test_every_resource_has_a_projection() -> None:
    assert set(PROJECTION) == set(fm.RESOURCES)


def test_the_mapping_makes_the_same_snapshot_of_slim_entries(demo_entries: Data) -> None:
    full, full_dropped = to_snapshot(demo_entries)
    assert full.persons and full.memberships and full.enrollments
    small, small_dropped = to_snapshot(slimmed(demo_entries))
    assert small == full
    assert small_dropped == full_dropped
    # as loaded back from the cache: through JSON, links interned again
    cached = {
        r: [intern_links(json.loads(json.dumps(e))) for e in es] for r, es in slimmed(demo_entries).items()
    }
    assert to_snapshot(cached) == (full, full_dropped)


def test_slim_entries_are_smaller(demo_entries: Data) -> None:
    size = len(json.dumps(demo_entries))
    assert len(json.dumps(slimmed(demo_entries))) < 0.7 * size


# -- every key the mapping reads is one the projection keeps -------------------------------


class Recording(dict):  # type: ignore[type-arg]
    """A dict that notes the path of every key read from it (``get``, ``[]``, ``in``, iteration)."""

    def __init__(self, items: dict[str, Any], path: tuple[Any, ...], reads: set[tuple[Any, ...]]) -> None:
        super().__init__(items)
        self.path, self.reads = path, reads

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads.add((*self.path, key))
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.reads.add((*self.path, key))
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.reads.add((*self.path, key))
        return super().__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        self.reads.add((*self.path, "*"))
        return super().__iter__()

    def keys(self) -> Any:
        self.reads.add((*self.path, "*"))
        return super().keys()

    def items(self) -> Any:
        self.reads.add((*self.path, "*"))
        return super().items()

    def values(self) -> Any:
        self.reads.add((*self.path, "*"))
        return super().values()


def recording(value: Any, path: tuple[Any, ...], reads: set[tuple[Any, ...]]) -> Any:
    if isinstance(value, dict):
        return Recording({k: recording(v, (*path, k), reads) for k, v in value.items()}, path, reads)
    if isinstance(value, list):
        return [recording(v, (*path, i), reads) for i, v in enumerate(value)]
    return value


def dropped_reads(reads: set[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The reads (resource, key, ...) of something ``PROJECTION`` does not keep."""
    bad = []
    for resource, *path in reads:
        proj = PROJECTION[resource]
        head, rest = path[0], tuple(path[1:])
        if head == "_links":
            if rest and rest[0] not in proj.relations:
                bad.append((resource, *path))
            continue
        shape = proj.fields.get(head)
        if shape is None:
            bad.append((resource, *path))  # includes "*": the whole entry iterated
        elif shape == ID:
            if rest not in ((), ("identifikatorverdi",)):
                bad.append((resource, *path))
        elif isinstance(shape, frozenset):
            if rest and rest[0] == 0:
                rest = rest[1:]  # a list of them: the first is kept
            if rest and rest[0] not in shape:
                bad.append((resource, *path))
    return sorted(bad, key=repr)


def test_the_mapping_reads_nothing_the_projection_drops(demo_entries: Data) -> None:
    reads: set[tuple[Any, ...]] = set()
    data = {r: [recording(e, (r,), reads) for e in es] for r, es in demo_entries.items()}
    snap, _ = to_snapshot(data)
    assert snap == to_snapshot(demo_entries)[0]
    # the recording sees the reads (else this test could not fail)
    assert (fm.ELEVFORHOLD, "gyldighetsperiode") in reads
    assert (fm.UNDERVISNINGSGRUPPE, "periode", 0, "start") in reads
    assert (fm.ELEV_PERSON, "navn", "fornavn") in reads
    assert (fm.FAG, "_links", "grepreferanse") in reads
    assert dropped_reads(reads) == []


@pytest.mark.parametrize(
    "read",
    [
        (fm.ELEV, "navn"),  # a field an elev's projection does not keep
        (fm.ELEV, "*"),  # the whole entry iterated
        (fm.ELEVFORHOLD, "_links", "programomrademedlemskap"),  # a relation not kept
        (fm.SKOLE, "systemId", "gyldighetsperiode"),  # more of an Identifikator than its value
        (fm.ELEV_PERSON, "kontaktinformasjon", "telefonnummer"),  # a part not kept
        (fm.BASISGRUPPE, "periode", 1, "start"),  # a second Periode of a list
    ],
)
def test_a_read_the_projection_drops_is_found(read: tuple[Any, ...]) -> None:
    assert dropped_reads({read, (fm.ELEV, "systemId", "identifikatorverdi")}) == [read]


# -- for any entry, the readers answer the same over the slim form --------------------------

_text = st.text(alphabet="aZ/:.?_-09 ", max_size=12)
_href = st.one_of(
    st.builds(
        lambda p, q: f"https://api.felleskomponent.no/{p}{q}", _text, st.sampled_from(["", "/", "?x=1"])
    ),
    _text,
    st.none(),
    st.integers(),
)
# A link is an object (its href anything); a bare string where a link object belongs is how the
# slim form writes a path, so the readers take it as one: the source maps slim entries only.
_link = st.one_of(st.fixed_dictionaries({"href": _href}), st.fixed_dictionaries({}), st.integers())
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), _text)
_ident = st.one_of(
    _scalar, st.fixed_dictionaries({"identifikatorverdi": _scalar, "gyldighetsperiode": _scalar})
)
_part = st.dictionaries(
    st.sampled_from(["start", "slutt", "beskrivelse", "fornavn", "etternavn", "epostadresse", "sip"]), _scalar
)
_value = st.one_of(_ident, _part, st.lists(_part, max_size=2))


@st.composite
def entries(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    resource = draw(st.sampled_from(fm.RESOURCES))
    names = [*PROJECTION[resource].fields, "kjonn", "bilde"]
    entry: dict[str, Any] = draw(st.dictionaries(st.sampled_from(names), _value))
    rels = [*PROJECTION[resource].relations, "elevforhold", "gruppemedlemskap"]
    entry["_links"] = draw(st.dictionaries(st.sampled_from(rels), st.lists(_link, max_size=3)))
    return resource, entry


@settings(max_examples=400, deadline=None)
@given(entries())
def test_readers_answer_the_same_over_a_slim_entry(got: tuple[str, dict[str, Any]]) -> None:
    resource, full = got
    small = slim(resource, full)
    proj = PROJECTION[resource]
    assert entry_key(small) == entry_key(full)
    for rel in proj.relations:
        assert fm.links(small, rel) == fm.links(full, rel)
    assert fm._grep_code(small) == fm._grep_code(full)
    for name, shape in proj.fields.items():  # each read as the mapping reads a field of its shape
        if shape == ID:
            assert fm.ident(small, name) == fm.ident(full, name)
        elif shape == PERIODE:
            assert fm.period(small, name) == fm.period(full, name)
        elif isinstance(shape, frozenset):
            for part in shape:
                assert fm._sub(small, name, part) == fm._sub(full, name, part)
        else:
            assert small.get(name) == full.get(name)
    if resource == fm.ARSTRINN:
        assert fm.grade_of(small) == fm.grade_of(full)
    reloaded = intern_links(json.loads(json.dumps(small)))
    assert reloaded == small


# -- the cache holds the slim form; an old cache is read in full once ------------------------


@pytest.fixture(scope="module")
def small_snap(tmp_path_factory: pytest.TempPathFactory) -> SourceSnapshot:
    return demo_snapshot(tmp_path_factory.mktemp("fint-proj-small"), SMALL)[1]


@pytest.fixture()
def fake(tmp_path: Path, small_snap: SourceSnapshot) -> Iterator[FakeFint]:
    server = FakeFint(tmp_path / "tls", small_snap)
    yield server
    server.close()


def read(cfg: Any) -> tuple[SourceSnapshot, FintSource]:
    src = FintSource(cfg)
    try:
        return src.read(), src
    finally:
        src.close()


def test_the_cache_holds_the_slim_form(tmp_path: Path, fake: FakeFint) -> None:
    cfg = fint_config(tmp_path / "cfg", fake)
    first, _ = read(cfg)
    folder = cfg.path(cfg.source.cache_dir)  # type: ignore[union-attr]
    for r in fm.RESOURCES:
        head, *lines = (folder / (r.replace("/", "__") + ".json")).read_text(encoding="utf-8").splitlines()
        assert json.loads(head)["version"] == 2
        stored = [e for line in lines for e in json.loads(line)]
        assert stored == [slim(r, e) for e in fake.entries[r].values()]
    second, src = read(cfg)
    assert set(src.last_read.values()) == {"quiet"}
    assert second == first


def test_a_cache_of_the_old_format_is_read_in_full_once(
    tmp_path: Path, fake: FakeFint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sources.fint.cache")
    cfg = fint_config(tmp_path / "cfg", fake)
    first, _ = read(cfg)
    cache = FintCache(cfg.path(cfg.source.cache_dir))  # type: ignore[union-attr]
    for r in fm.RESOURCES:  # what version 1 wrote: one object, the entries whole
        path = cache._file(r)
        head = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        whole = {entry_key(e): e for e in fake.entries[r].values()}
        body = {
            "version": 1,
            "resource": r,
            "since": head["since"],
            "full_at": head["full_at"],
            "entries": whole,
        }
        path.write_text(json.dumps(body), encoding="utf-8")
    second, src = read(cfg)
    assert set(src.last_read.values()) == {"full"}
    assert "another format" in caplog.text
    assert second == first
    third, src = read(cfg)
    assert set(src.last_read.values()) == {"quiet"}
    assert third == first


def test_raw_relations_are_the_grep_references() -> None:
    assert {"grepreferanse"} == RAW_RELATIONS
    for r, proj in PROJECTION.items():
        assert "self" in proj.relations, r


def test_an_entry_without_a_self_link_keeps_its_system_id() -> None:
    full = {"systemId": {"identifikatorverdi": "M1"}, "_links": {"elevforhold": [{"href": "https://x/a/B"}]}}
    small = slim(fm.BASISGRUPPEMEDLEMSKAP, full)
    assert small == {"systemId": "M1", "@elevforhold": "/a/b"}
    assert entry_key(small) == entry_key(full) == "systemid:M1"
    with_self = {**full, "_links": {"self": [{"href": "https://x/ms/1"}]}}
    assert slim(fm.BASISGRUPPEMEDLEMSKAP, with_self) == {"@self": "/ms/1"}  # its systemId is not read
