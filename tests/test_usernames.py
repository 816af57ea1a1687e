"""Username schemes, candidates, allocation and reserved-name CSVs."""

from __future__ import annotations

import gc
import random
import re
import sys
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.usernames import (
    ALWAYS_RESERVED,
    FALLBACK,
    Scheme,
    UsernameRequest,
    allocate,
    candidates,
    parse_scheme,
    read_reserved_csv,
    valid_username,
)

DEFAULT = parse_scheme("{given:3}{family:3}{n}")
USERNAME = re.compile(r"[a-z0-9]+")

# --- parse_scheme ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "parts"),
    [
        ("{given:3}{family:3}{n}", (("given", 3), ("family", 3), ("n", None))),
        ("{given}{family}", (("given", None), ("family", None), ("n", None))),  # {n} appended
        ("{g}{f}{yy}{n}", (("given", 1), ("family", 1), ("yy", None), ("n", None))),
        ("{given:2}{n}{middle:1}{family:2}", (("given", 2), ("n", None), ("middle", 1), ("family", 2))),
        ("elev{yy}{n}", (("lit", "elev"), ("yy", None), ("n", None))),
        ("{given}.{family}{n}", (("given", None), ("lit", "."), ("family", None), ("n", None))),
        ("{ given : 3 }{family:12}", (("given", 3), ("family", 12), ("n", None))),
        ("Ø{family}", (("lit", "o"), ("family", None), ("n", None))),  # literals are folded
        ("E{family}", (("lit", "e"), ("family", None), ("n", None))),
    ],
)
def test_parse_scheme(pattern: str, parts: tuple) -> None:
    scheme = parse_scheme(pattern)
    assert scheme.parts == parts
    assert scheme.pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{given", "not closed"),
        ("{given{family}", "not closed"),
        ("given}", "has no '{'"),
        ("}{given}", "has no '{'"),
        ("{{given}}", "not closed"),
        ("{}", "unknown part"),
        ("{foo}", "unknown part {foo}"),
        ("{Given}", "unknown part"),
        ("{given:0}", "whole number >= 1"),
        ("{given:-1}", "whole number >= 1"),
        ("{family:3x}", "whole number >= 1"),
        ("{family:}", "whole number >= 1"),
        ("{given:٣}", "whole number >= 1"),  # a non-ASCII digit
        ("{n:3}", "takes no length"),
        ("{g:2}", "takes no length"),
        ("{n}{given}{n}", "only once"),
        ("{given} {family}", "cannot be part of a username"),
        ("{given}@{family}", "cannot be part of a username"),
        ("{given}😀", "cannot be part of a username"),
        ("{yy}{n}", "needs a name part"),
        ("..{n}", "needs a name part"),
        ("", "needs a name part"),
    ],
)
def test_parse_scheme_errors(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        parse_scheme(pattern)
    assert repr(pattern) in str(err.value)


# --- candidates -----------------------------------------------------------------


def first(scheme: str, given_: str | None, family: str | None, n: int = 3, **kw: object) -> list[str]:
    middle = kw.pop("middle", None)
    year = kw.pop("year", None)
    return list(islice(candidates(parse_scheme(scheme), given_, middle, family, year, **kw), n))  # type: ignore[arg-type]


A150, B150 = "A" * 150, "B" * 150


@pytest.mark.parametrize(
    ("scheme", "given_", "family", "kw", "expected"),
    [
        ("{given:3}{family:3}{n}", "Ola", "Nordmann", {}, ["olanor", "olanor2", "olanor3"]),
        ("{given:3}{family:3}{n}", "Ola", "Nordmann", {"min_counter": 1}, ["olanor", "olanor1", "olanor2"]),
        ("{given:3}{family:3}{n}", "Li", "Wu", {}, ["liwu", "liwu2", "liwu3"]),
        ("{given:3}{family:3}{n}", "Ærlig", "Ødegård", {}, ["aerode", "aerode2", "aerode3"]),
        ("{given:3}{family:3}{n}", "Ole-Martin", "Berg-Olsen", {}, ["oleber", "oleber2", "oleber3"]),
        ("{given}{family}{n}", "Ole-Martin Nils", "Berg-Olsen", {}, ["olebergolsen", "olebergolsen2"]),
        ("{given:3}{family:3}{n}", "😀 Åse", "van der Berg", {}, ["aasvan", "aasvan2", "aasvan3"]),
        ("{given:3}{family:3}{n}", "  -Åse", "O'Neil", {}, ["aasone", "aasone2", "aasone3"]),
        ("{given:3}{family:3}{n}", "", "", {}, [FALLBACK, FALLBACK + "2", FALLBACK + "3"]),
        ("{given:3}{family:3}{n}", None, None, {}, ["bruker", "bruker2", "bruker3"]),
        ("{given:3}{family:3}{n}", "😀", "🎉🎉", {}, ["bruker", "bruker2", "bruker3"]),
        ("{given:3}{family:3}{n}", "Владимир", "Nordmann", {}, ["nor", "nor2", "nor3"]),
        ("{given:3}{family:3}{n}", "Ola2", "Nord 3.", {}, ["olanor", "olanor2", "olanor3"]),  # digits dropped
        ("{given:3}{family:3}{n}", "007", "Bond", {}, ["bon", "bon2", "bon3"]),
        ("elev{given:1}{n}", "😀", "", {}, ["elevbruker", "elevbruker2", "elevbruker3"]),
        ("{given:3}{family:3}{n}", A150, B150, {}, ["aaabbb", "aaabbb2", "aaabbb3"]),
        (
            "{given}{family}{n}",
            A150,
            B150,
            {},
            ["a" * 10 + "b" * 10, "a" * 10 + "b" * 9 + "2", "a" * 10 + "b" * 9 + "3"],
        ),
        (
            "{given}{family}{n}",
            "Kristoffer",
            "Andreassen-Johannessen",
            {},
            ["kristofferandreassen", "kristofferandreasse2", "kristofferandreasse3"],
        ),
        (
            "{given}{family}{n}",
            "Kristoffer",
            "Andreassen",
            {"max_length": 12},
            ["kristoandrea", "kristoandre2", "kristoandre3"],
        ),
        ("{given:3}{family:3}{n}", "Ola", "Nordmann", {"max_length": 3}, ["oln", "on2", "on3"]),
        (
            "{given:3}{family:3}{yy}{n}",
            "Ola",
            "Nordmann",
            {"year": 2009},
            ["olanor09", "olanor092", "olanor093"],
        ),
        ("{given:3}{family:3}{yy}{n}", "Ola", "Nordmann", {}, ["olanor", "olanor2", "olanor3"]),  # no year
        (
            "{g}{middle}{f}{n}",
            "Kari",
            "Nordmann",
            {"middle": "Anne Sofie"},
            ["kannesofien", "kannesofien2", "kannesofien3"],
        ),
        ("{given}.{family}{n}", "Ola", "Nordmann", {}, ["ola.nordmann", "ola.nordmann2", "ola.nordmann3"]),
        ("{given}.{family}.{n}", "Ola", "Nordmann", {}, ["ola.nordmann", "ola.nordmann.2", "ola.nordmann.3"]),
        ("{given}.{family}{n}", "Ola", "", {}, ["ola", "ola2", "ola3"]),  # no dangling dot
        ("{given}.{family}{n}", "", "Nordmann", {}, ["nordmann", "nordmann2", "nordmann3"]),
        ("elev{yy}{n}", "Ola", "Nordmann", {"year": 2015}, ["elev15", "elev152", "elev153"]),
    ],
)
def test_candidates(scheme: str, given_: str, family: str, kw: dict, expected: list[str]) -> None:
    assert first(scheme, given_, family, len(expected), **kw) == expected


def test_candidates_keep_the_counter_whole_when_shortening() -> None:
    got = list(islice(candidates(parse_scheme("{given}{family}{n}"), A150, None, B150, None), 1200))
    assert all(len(c) <= 20 for c in got)
    assert got[999] == "a" * 8 + "b" * 8 + "1000"  # counter 1000, names shortened around it
    assert len(set(got)) == len(got)


def test_candidates_stop_when_the_counter_cannot_fit() -> None:
    gen = candidates(parse_scheme("elev{n}"), "Ola", None, "Nordmann", None, max_length=5)
    assert list(islice(gen, 9)) == ["elev"] + [f"elev{i}" for i in range(2, 10)]
    with pytest.raises(ValueError, match="no username fits in 5"):
        next(gen)


@given(
    st.text(max_size=160),
    st.none() | st.text(max_size=40),
    st.text(max_size=160),
    st.none() | st.integers(1900, 2039),
    st.sampled_from(
        ["{given:3}{family:3}{n}", "{given}{family}", "{g}{middle}{family}{yy}{n}", "{family}{n}{g}"]
    ),
    st.integers(6, 20),
)
def test_candidates_are_short_and_plain(
    given_: str, middle: str | None, family: str, year: int | None, pattern: str, max_length: int
) -> None:
    got = list(islice(candidates(parse_scheme(pattern), given_, middle, family, year, max_length), 30))
    assert all(USERNAME.fullmatch(c) and len(c) <= max_length for c in got)
    assert len(set(got)) == len(got)


# --- allocate -------------------------------------------------------------------


def req(pid: str, given_: str | None, family: str | None, **kw: object) -> UsernameRequest:
    return UsernameRequest(
        person_id=pid,
        given=given_,
        middle=kw.get("middle"),  # type: ignore[arg-type]
        family=family,
        birth_year=kw.get("year"),  # type: ignore[arg-type]
        is_student=bool(kw.get("student", False)),
    )


def _blocks_left_by(call: object) -> int:
    """Small heap blocks still allocated once ``call()``'s result is dropped."""
    gc.collect()
    before = sys.getallocatedblocks()
    got = call()  # type: ignore[operator]
    del got
    gc.collect()
    return sys.getallocatedblocks() - before


def test_allocate_keeps_nothing_once_it_returns() -> None:
    # A first run issues ~250,000 usernames amid its derivation: whatever allocate kept
    # after returning (a module-wide cache of folded names held ~17,000 entries) stayed
    # scattered over the heap and kept ~160 MB of its pages from being given back.
    reqs = [req(f"P{i:05d}", f"Given{i}é", f"Family-{i}ø", middle=f"M{i}") for i in range(3_000)]
    allocate(reqs[:10], set(), DEFAULT)  # anything allocated once per process (interned, imports)
    assert _blocks_left_by(lambda: allocate(reqs, set(), DEFAULT)) < 100
    assert (
        _blocks_left_by(lambda: [next(candidates(DEFAULT, r.given, r.middle, r.family, None)) for r in reqs])
        < 100
    )


def test_allocate_skips_taken_and_issues_in_person_id_order() -> None:
    requests = [req("p3", "Ola", "Nordmann"), req("p1", "Ola", "Nordmann"), req("p2", "Olav", "Nordby")]
    taken = frozenset({"olanor", "olanor3"})
    assert allocate(requests, taken, DEFAULT) == {"p1": "olanor2", "p2": "olanor4", "p3": "olanor5"}


def test_allocate_does_not_mutate_taken() -> None:
    taken = {"olanor"}
    allocate([req("p1", "Ola", "Nordmann")], taken, DEFAULT)
    assert taken == {"olanor"}


def test_allocate_uses_the_student_scheme_for_students() -> None:
    student = parse_scheme("{given:3}{family:3}{yy}{n}")
    requests = [
        req("s1", "Ola", "Nordmann", year=2012, student=True),
        req("t1", "Ola", "Nordmann", year=1980),
    ]
    assert allocate(requests, set(), DEFAULT, student_scheme=student) == {"s1": "olanor12", "t1": "olanor"}
    assert allocate(requests, set(), DEFAULT) == {"s1": "olanor", "t1": "olanor2"}


def test_allocate_never_issues_always_reserved_names() -> None:
    scheme = parse_scheme("{given}{n}")
    assert allocate([req("p1", "Admin", None), req("p2", "Root", "X")], set(), scheme) == {
        "p1": "admin2",
        "p2": "root2",
    }
    assert "administrator" in ALWAYS_RESERVED


def test_allocate_honours_min_counter_and_max_length() -> None:
    requests = [req(f"p{i}", "Kristoffer", "Andreassen") for i in range(3)]
    got = allocate(requests, set(), parse_scheme("{given}{family}"), max_length=12, min_counter=1)
    assert got == {"p0": "kristoandrea", "p1": "kristoandre1", "p2": "kristoandre2"}


def test_allocate_rejects_duplicate_person_ids() -> None:
    with pytest.raises(ValueError, match="duplicate person_id 'p1'"):
        allocate([req("p1", "Ola", "Nordmann"), req("p1", "Kari", "Nordmann")], set(), DEFAULT)


def test_allocate_many_namesakes_quickly() -> None:
    # The per-base memo makes this linear; a naive scan would take ~50 million steps.
    requests = [req(f"p{i:05d}", "Ola", "Nordmann") for i in range(10_000)]
    taken = frozenset(f"olanor{i}" for i in range(2, 5000, 2))
    got = allocate(requests, taken, DEFAULT)
    assert len(set(got.values())) == 10_000
    assert got["p00000"] == "olanor" and got["p00001"] == "olanor3"


def reference_allocate(
    requests: list[UsernameRequest], taken: set[str], scheme: Scheme, student: Scheme | None, max_length: int
) -> dict[str, str]:
    """The obvious, slow allocation allocate() must agree with."""
    used = set(taken) | ALWAYS_RESERVED
    out = {}
    for r in sorted(requests, key=lambda r: r.person_id):
        s = student if r.is_student and student is not None else scheme
        for c in candidates(s, r.given, r.middle, r.family, r.birth_year, max_length):
            if c not in used:
                break
        used.add(c)
        out[r.person_id] = c
    return out


NAME_POOL = [
    "Ola",
    "Olav",
    "Nordmann",
    "Nordby",
    "",
    "😀",
    "Åse",
    "Aase",
    "Ærlig-Ødegård",
    "A" * 150,
    "van der Berg",
]
names = st.sampled_from(NAME_POOL) | st.text(max_size=30)


@st.composite
def request_lists(draw: st.DrawFn) -> list[UsernameRequest]:
    n = draw(st.integers(0, 40))
    ids = draw(st.lists(st.text(min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
    return [
        UsernameRequest(
            person_id=pid,
            given=draw(names | st.none()),
            middle=draw(st.none() | names),
            family=draw(names | st.none()),
            birth_year=draw(st.none() | st.integers(1950, 2030)),
            is_student=draw(st.booleans()),
        )
        for pid in ids
    ]


taken_sets = st.sets(
    st.sampled_from(["olanor", "olanor2", "olanor3", "bruker", "bruker2", "aasnor", "aaaaaa"])
    | st.from_regex(r"[a-z]{1,6}[0-9]{0,2}", fullmatch=True),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    request_lists(),
    taken_sets,
    st.sampled_from(
        [
            "{given:3}{family:3}{n}",
            "{given}{family}",
            "{g}{middle:2}{family}{yy}{n}",
            "{given:2}{n}{family:2}",
        ]
    ),
    st.none() | st.just("{given:3}{family:3}{yy}{n}"),
    st.integers(6, 20),
    st.randoms(use_true_random=False),
)
def test_allocate_properties(
    requests: list[UsernameRequest],
    taken: set[str],
    pattern: str,
    student_pattern: str | None,
    max_length: int,
    rnd: random.Random,
) -> None:
    scheme = parse_scheme(pattern)
    student = parse_scheme(student_pattern) if student_pattern else None
    got = allocate(requests, frozenset(taken), scheme, student, max_length=max_length)
    assert set(got) == {r.person_id for r in requests}
    names_ = list(got.values())
    assert len(set(names_)) == len(names_)
    assert not set(names_) & taken
    assert not set(names_) & ALWAYS_RESERVED
    assert all(USERNAME.fullmatch(n) and len(n) <= max_length for n in names_)
    shuffled = list(requests)
    rnd.shuffle(shuffled)
    assert allocate(shuffled, set(taken), scheme, student, max_length=max_length) == got
    assert got == reference_allocate(requests, taken, scheme, student, max_length)


@settings(max_examples=50, deadline=None)
@given(request_lists(), taken_sets | st.just({"ola.nordmann", "ola.nordmann2", "ola", "nordmann"}))
def test_allocate_with_separators(requests: list[UsernameRequest], taken: set[str]) -> None:
    scheme = parse_scheme("{given}.{family}{n}")
    got = allocate(requests, taken, scheme)
    assert len(set(got.values())) == len(got)
    assert not set(got.values()) & taken
    assert all(valid_username(n) and len(n) <= 20 and not n.endswith(".") for n in got.values())
    assert got == reference_allocate(requests, taken, scheme, None, 20)


# --- valid_username -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("olanor", True),
        ("ola.nordmann", True),
        ("ola_nordmann-2", True),
        ("2ola", True),
        ("a", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("Olanor", False),
        (".ola", False),
        ("-ola", False),
        ("ola nor", False),
        ("bjørn", False),
        ("ola@skole.no", False),
        ("olanor\n", False),
        (None, False),
    ],
)
def test_valid_username(name: str, ok: bool) -> None:
    assert valid_username(name) is ok


# --- read_reserved_csv ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("username,name\nolanor,Ola\nkarnor,Kari\n", ["olanor", "karnor"]),
        ("Name;SamAccountName;Enabled\nOla;OlaNor;True\nKari;karnor;False\n", ["olanor", "karnor"]),
        ("uid\r\nolanor\r\n", ["olanor"]),
        ("Fornavn;Etternavn;Brukernavn\nÅse;Ødegård;aasode\n", ["aasode"]),
        ('"UserName","Mail"\n" Ola.Nordmann ","ola@x.no"\n', ["ola.nordmann"]),
        ("olanor\nkarnor\n\n\nperhan\n", ["olanor", "karnor", "perhan"]),  # no header, blank lines
        ("\n\nolanor\n", ["olanor"]),
        ("olanor\nOLANOR\nolanor\n", ["olanor"]),  # duplicates and case folded
        ("username,name\n,Ola uten brukernavn\nkarnor,Kari\n", ["karnor"]),  # empty value skipped
        ("username,name\nkarnor\n", ["karnor"]),  # short row
        (
            '#TYPE Selected.Microsoft.ActiveDirectory.Management.ADUser\n"SamAccountName"\n"olanor"\n',
            ["olanor"],
        ),
        ("", []),
        ("username\n", []),
    ],
)
def test_read_reserved_csv(tmp_path: Path, content: str, expected: list[str]) -> None:
    path = tmp_path / "reserved.csv"
    path.write_text(content, encoding="utf-8")
    assert read_reserved_csv(path) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("\ufeffbrukernavn;navn\nolanor;Ola\n".encode(), ["olanor"]),  # UTF-8 with BOM
        ("\ufeffolanor\nkarnor\n".encode(), ["olanor", "karnor"]),  # BOM, no header
        ("Navn;SamAccountName\nBjørn Ødegård;bjoode\n".encode("cp1252"), ["bjoode"]),  # Excel's Windows-1252
        ("SamAccountName\r\nolanor\r\n".encode("utf-16"), ["olanor"]),  # PowerShell Out-File
    ],
)
def test_read_reserved_csv_encodings(tmp_path: Path, data: bytes, expected: list[str]) -> None:
    path = tmp_path / "reserved.csv"
    path.write_bytes(data)
    assert read_reserved_csv(str(path)) == expected


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("username\nolanor\nola nordmann\n", ":3: invalid username 'ola nordmann'"),
        ("username;navn\nolanor;Ola\n\nbjørn;Bjørn\n", ":4: invalid username 'bjørn'"),
        ("olanor\n.hidden\n", ":2: invalid username '.hidden'"),
        ("navn,epost\nOla,ola@x.no\n", ":1: no username column"),
        ('username\n"ola"nor\n', ":2: not readable as CSV"),  # text after a closing quote
        ('username\nolanor\n"karnor\n', ":3: not readable as CSV"),  # quote opened on line 3, never closed
    ],
)
def test_read_reserved_csv_bad_lines(tmp_path: Path, content: str, where: str) -> None:
    path = tmp_path / "reserved.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(path) + where)):
        read_reserved_csv(path)


def test_read_reserved_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read reserved usernames"):
        read_reserved_csv(tmp_path / "nope.csv")
