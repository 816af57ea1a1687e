"""JSON text written fast must be the standard library's text, byte for byte (provisioner/core/jsontext.py).

Every stored target object's digest was made from the standard library's canonical JSON:
a single differing byte would plan an update of every object of every target.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.core import jsontext
from provisioner.core.rows import digest, shared

SORTED = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# Hostile text: the name characters DNs and filters escape, control characters, emoji,
# the line separators JSON leaves alone, and lone surrogates (orjson refuses those).
HOSTILE = ',+"\\<>;=*()# \x00\x01\x1f\x7f\x85\u2028\u2029\ufeffæøåÆØÅ😀\U0010ffff'
any_char = st.characters(codec=None, exclude_categories=())  # surrogates included
text = st.text(alphabet=any_char | st.sampled_from(HOSTILE), max_size=12)
scalar = st.none() | st.booleans() | st.integers() | text
value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(text, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(value)
def test_the_fast_text_is_the_standard_librarys_for_every_record_value(v: Any) -> None:
    assert jsontext.canonical(v) == SORTED.encode(v)
    assert jsontext.compact(v) == COMPACT.encode(v)
    assert jsontext.loads(jsontext.canonical(v)) == json.loads(SORTED.encode(v))


@pytest.mark.parametrize(
    ("v", "why"),
    [
        ("a\ud800b", "a lone surrogate: orjson refuses it, the standard library writes it"),
        ({"k": ["\udfff"]}, "a lone surrogate deeper in"),
        (2**64, "an integer beyond 64 bits"),
        (-(2**63) - 1, "below 64 bits"),
        ({2: "a", 1: "b"}, "keys that are not text"),
        ({"ø": 1, "o": 2, "Å": 3, "z": 4}, "keys sorted by code point, not by locale"),
        ({"b": {"d": 1, "c": 2}, "a": []}, "nested keys sorted too"),
        ('\x00\t\n\x1f"\\/', "escapes"),
    ],
)
def test_what_orjson_refuses_or_could_write_differently(v: Any, why: str) -> None:
    assert jsontext.canonical(v) == SORTED.encode(v), why
    assert jsontext.compact(v) == COMPACT.encode(v), why
    assert jsontext.loads(SORTED.encode(v)) == json.loads(SORTED.encode(v)), why


@pytest.mark.parametrize("bad", ["", "x", "{", '{"a":}', "[1,]"])
def test_text_that_is_not_json_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(bad)


def test_a_stored_digest_is_the_one_the_standard_library_made() -> None:
    # The digest of a Feide person with hostile text, as every earlier version stored it.
    attrs = {"cn": 'Åse "Ø" Grønlie, jr.', "uid": "aasgro", "eduPersonAffiliation": ["member", "student"]}
    members = (("P1", "student"), ("P2", "teacher"))
    body = f"person\x00{SORTED.encode(attrs)}\x00{SORTED.encode([list(m) for m in members])}"
    assert digest("person", attrs, members) == hashlib.blake2b(body.encode(), digest_size=16).hexdigest()
    assert digest("person", attrs, iter(members)) == digest("person", attrs, members)


@given(st.lists(st.lists(st.one_of(st.none(), st.sampled_from(["a", "bb", "student", ""]), st.text()))))
def test_shared_columns_hold_the_same_values_one_object_per_value(columns: list[list[str | None]]) -> None:
    """rows.shared: every column reads the same, and equal text is one object across columns."""
    pool: dict[Any, Any] = {}
    # Built from pieces, so that equal values are (mostly) distinct objects before sharing.
    made = [tuple(None if v is None else "".join(list(v)) for v in col) for col in columns]
    out = [shared(col, pool) for col in made]
    assert out == made
    first: dict[str | None, int] = {}
    for col in out:
        for v in col:
            assert id(v) == first.setdefault(v, id(v))
