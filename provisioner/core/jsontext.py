"""JSON text as the state store keeps it, written and read fast (pure: values in, text out).

A run at Oslo size encodes about a million target objects to compare their digests
(provisioner/core/rows.py) and writes as many into the store and the changelog: the
standard library's encoder was the largest single cost of a full plan. orjson writes
the same text four to five times faster, so it is used wherever its text is exactly the
standard library's:

- ``canonical``: keys sorted, no spaces, non-ASCII as it is: a target object's digest
  and its stored JSON. Stored digests were made by the standard library, so a byte of
  difference would mean a change planned for every object; ``test_jsontext.py`` checks
  that the two agree for every value a record can hold;
- ``compact``: the same, keys in their order (stored changes, plans);
- ``loads``: either's text back.

What orjson refuses goes to the standard library instead, which writes and reads it as
before: a lone surrogate (a name read from a broken export), an integer beyond 64 bits,
a key that is not text. Records hold no floats (mappings make text, whole numbers and
flags); a float would be written as orjson writes it ("1e16" for "1e+16", null for NaN)
and its object's digest would change once. orjson would read an integer beyond 64 bits
back as a float, so text with a run of 19 digits or more is read by the standard library.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_SORTED = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SORT_KEYS = orjson.OPT_SORT_KEYS
# 19 digits in a row: maybe an integer orjson would read as a float (or a long number in
# a text, which the standard library reads as well, only slower). Found by marking every
# digit with 0xFF, a byte UTF-8 never holds, and looking for a run of 19 marks: ten times
# faster than a regular expression on a plan's stored chunks (megabytes of text).
DIGITS_MARKED = bytes.maketrans(b"0123456789", b"\xff" * 10)  # also provisioner.core.nin's
_RUN19 = b"\xff" * 19


def canonical(value: Any) -> str:
    """Canonical JSON: the same data always gives the same text (and digest)."""
    try:
        return orjson.dumps(value, option=_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is one: what orjson cannot write exactly
        return _SORTED.encode(value)


def compact(value: Any) -> str:
    """JSON with no spaces, keys in their order, non-ASCII as it is."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _COMPACT.encode(value)


def loads(text: str | bytes) -> Any:
    """The value of JSON text (ValueError when it is not JSON)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if raw.translate(DIGITS_MARKED).find(_RUN19) >= 0:
        return json.loads(text)
    try:
        return orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError: a lone surrogate, NaN or Infinity, or not JSON
        return json.loads(text)
