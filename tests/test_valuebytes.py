"""Values as bytes for fingerprints (provisioner.core.valuebytes): equal values, equal bytes;
different values or types, different bytes; whichever objects hold them."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import pytest

from provisioner.core.valuebytes import bulk_bytes, value_bytes

ENCODINGS = [pytest.param(value_bytes, id="value_bytes"), pytest.param(bulk_bytes, id="bulk_bytes")]


def fresh(text: str) -> str:
    """An equal string that is another object (a driver makes one per cell)."""
    return "".join(list(text))


class Odd:
    """A value neither pickle nor marshal writes (a driver's own type), with a stable repr."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __reduce__(self) -> object:
        raise TypeError("not picklable")

    def __repr__(self) -> str:
        return f"Odd({self.v})"


@pytest.mark.parametrize("encode", ENCODINGS)
@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: [("P1", fresh("Nordmann"), None, 7)], "fresh strings"),
        (lambda: [("P1", "Ola\udcff")], "a lone surrogate (text read leniently)"),
        (lambda: [(dt.date(2026, 8, 15), decimal.Decimal("6"))], "a driver's date and Decimal"),
        (lambda: [(memoryview(b"\x00\x01"),)], "a memoryview (marshal writes it, pickle not)"),
        (lambda: [(Odd(1),)], "neither: its repr"),
        (lambda: [(float("nan"), math.inf)], "NaN and infinity"),
    ],
)
def test_equal_values_give_equal_bytes(encode, make, why) -> None:  # noqa: ANN001
    assert encode(make()) == encode(make()), why


@pytest.mark.parametrize("encode", ENCODINGS)
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("P1", "Nordmann"), ("P1", "Nordmenn")),
        ((1,), (True,)),
        ((1,), (1.0,)),
        ((1,), ("1",)),
        ((None,), (float("nan"),)),  # JSON would write both as null
        ((None,), ("None",)),
        ((0.0,), (-0.0,)),
        (("2026-08-15",), (dt.date(2026, 8, 15),)),
        ((decimal.Decimal("6"),), (6,)),
        (("a", "b"), ["a", "b"]),
        (("ab", ""), ("a", "b")),
        ((Odd(1),), (Odd(2),)),
    ],
)
def test_different_values_or_types_give_different_bytes(encode, a, b) -> None:  # noqa: ANN001
    assert encode([a]) != encode([b])


@pytest.mark.parametrize("encode", ENCODINGS)
def test_one_object_twice_gives_the_bytes_of_two_equal_objects(encode) -> None:  # noqa: ANN001
    """A pool of shared strings (provisioner.core.rows.shared) must not change a fingerprint."""
    role = fresh("student")
    shared = [("P1", role), ("P2", role)]
    apart = [("P1", fresh("student")), ("P2", fresh("student"))]
    assert shared[0][1] is shared[1][1] and apart[0][1] is not apart[1][1]
    assert encode(shared) == encode(apart)


def test_the_first_byte_tells_the_encoding_so_two_never_meet() -> None:
    rows = [("P1", "Nordmann")]
    assert bulk_bytes(rows)[:1] == b"p"
    assert bulk_bytes([(memoryview(b"x"),)])[:1] == b"m"  # pickle cannot: marshal
    assert bulk_bytes([(Odd(1),)])[:1] == b"r"  # neither: repr
    assert value_bytes(rows)[:1] == b"m"
    assert value_bytes([(dt.date(2026, 8, 15),)])[:1] == b"r"
