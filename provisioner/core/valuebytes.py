"""Values as bytes to fingerprint: equal values give equal bytes, whichever objects hold them.

A run tells what changed in the source by hashing what it read (sources/sql.py: every
table's rows, ~1.5 million at Oslo size, on every run, quiet ones included) and a person
patch fingerprints the persons' rows in blocks (provisioner.core.patch). Two encodings:

- ``value_bytes`` for one small value (a row): marshal format 0, one C call, ~0.4 µs a
  row. Format 0 writes no back-references and no interning marks, so the bytes do not
  depend on which objects hold the values.
- ``bulk_bytes`` for many rows at once: pickle with its memo off (``fast``), which
  writes every value in full the same way, is about twice as fast as marshal over a
  list of rows and writes a fifth fewer bytes to hash (Oslo size: 0.14 s against 0.25 s
  for every table's rows), but costs ~1 µs to set up: too much per row.

A value the first encoding cannot write (marshal: a driver's date or Decimal; pickle: a
memoryview) takes the next (marshal, then ``repr``); the first byte says which, so two
encodings never give the same bytes. Each fingerprint uses one of the two throughout: a
stored fingerprint is compared only with one made the same way.
"""

from __future__ import annotations

import io
import marshal
import pickle

_UNPICKLABLE = (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError)


def value_bytes(value: object) -> bytes:
    """One value as bytes: marshal format 0, or its repr where marshal cannot write it."""
    try:
        return b"m" + marshal.dumps(value, 0)  # type: ignore[arg-type]
    except ValueError:
        return b"r" + repr(value).encode("utf-8", "surrogatepass")


def bulk_bytes(value: object) -> bytes:
    """Many rows as bytes: pickle without a memo, or ``value_bytes`` where pickle cannot write them.

    Without the memo (``fast``) a value that occurs twice is written twice, so the bytes
    do not depend on whether the driver, or a pool of shared strings, gave one object or
    two. Rows hold no cycles (fast mode would recurse on one).
    """
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5)
    pickler.fast = True
    try:
        pickler.dump(value)
    except _UNPICKLABLE:
        return value_bytes(value)
    return b"p" + out.getvalue()
