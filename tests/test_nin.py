"""NIN validation, kinds, century rules, masking and synthetic numbers.

Every number here is made up: synthetic (month + 80), or dated in the late 2030s, or in
the 1800s — dates no living person's number can carry.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.core import nin

W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def classic(digits: list[int], weights: tuple[int, ...]) -> int | None:
    """The SPEC's check digit: 11 - (sum mod 11), 11 -> 0, 10 -> none."""
    k = 11 - sum(w * d for w, d in zip(weights, digits)) % 11
    return 0 if k == 11 else (None if k == 10 else k)


def complete(nine: str, k1: int | None = None) -> str | None:
    """Add check digits to nine digits (K1 classic unless given); None if K2 has no digit."""
    d = [int(c) for c in nine]
    if k1 is None:
        k1 = classic(d, W1)
        if k1 is None:
            return None
    k2 = classic(d + [k1], W2)
    return None if k2 is None else f"{nine}{k1}{k2}"


def first_number(ddmmyy: str, individuals: range = range(500, 1000)) -> str:
    """The first individual number that gives ddmmyy valid check digits."""
    for i in individuals:
        n = complete(f"{ddmmyy}{i:03d}")
        if n is not None:
            return n
    raise AssertionError(f"no number for {ddmmyy}")


def k1_2032_only(ddmmyy: str) -> str:
    """A number whose K1 is valid under the 2032 rule only (differs from the classic digit)."""
    for i in range(500, 1000):
        nine = f"{ddmmyy}{i:03d}"
        d = [int(c) for c in nine]
        s = sum(w * x for w, x in zip(W1, d))
        for k1 in range(10):
            if (s + k1) % 11 in (1, 2, 3) and k1 != classic(d, W1):
                n = complete(nine, k1)
                if n is not None:
                    return n
    raise AssertionError("no 2032-rule number found")


FNR = first_number("170539")  # 17 May 2039
DNR = first_number("570539")  # day + 40
HNR = first_number("174539")  # month + 40 (H-number, or NAV synthetic)
SYNTH = first_number("178539")  # month + 80 (Tenor synthetic)
K1_2032 = k1_2032_only("178539")


@pytest.mark.parametrize(
    ("number", "kind", "born"),
    [
        (FNR, "fnr", dt.date(2039, 5, 17)),
        (DNR, "dnr", dt.date(2039, 5, 17)),
        (HNR, "hnr", dt.date(2039, 5, 17)),
        (SYNTH, "synthetic", dt.date(2039, 5, 17)),
        (K1_2032, "synthetic", dt.date(2039, 5, 17)),
        (first_number("290236"), "fnr", dt.date(2036, 2, 29)),  # leap day
    ],
)
def test_valid_numbers(number: str, kind: str, born: dt.date) -> None:
    assert nin.validate(number) == number
    assert nin.is_valid(number)
    assert nin.kind(number) == kind
    assert nin.birth_date(number) == born


def test_2032_rule_number_differs_from_classic_k1() -> None:
    d = [int(c) for c in K1_2032[:9]]
    assert int(K1_2032[9]) != classic(d, W1)
    assert (sum(w * x for w, x in zip(W1, d)) + int(K1_2032[9])) % 11 in (1, 2, 3)
    assert nin.is_valid(K1_2032)


def test_2032_rule_rescues_a_number_with_no_classic_k1() -> None:
    # Where the classic K1 would be 10 (no digit), the 2032 rule still allows one.
    for i in range(500, 1000):
        nine = f"178539{i:03d}"
        d = [int(c) for c in nine]
        if classic(d, W1) is not None:
            continue
        s = sum(w * x for w, x in zip(W1, d))
        n = next((m for k1 in range(10) if (s + k1) % 11 in (1, 2, 3) and (m := complete(nine, k1))), None)
        if n is not None:
            assert nin.is_valid(n)
            return
    pytest.fail("no number without a classic K1 found")


def wrong_k1(number: str) -> str:
    """Same first nine digits, a K1 no rule allows, and a K2 that is right for it."""
    d = [int(c) for c in number[:9]]
    s = sum(w * x for w, x in zip(W1, d))
    for k1 in range(10):
        if (s + k1) % 11 not in (0, 1, 2, 3):
            n = complete(number[:9], k1)
            if n is not None:
                return n
    raise AssertionError("no wrong K1 found")


def test_wrong_first_check_digit() -> None:
    bad = wrong_k1(SYNTH)
    assert not nin.is_valid(bad)
    with pytest.raises(nin.InvalidNIN, match="first check digit"):
        nin.validate(bad)


def test_wrong_second_check_digit() -> None:
    bad = SYNTH[:10] + str((int(SYNTH[10]) + 1) % 10)
    assert not nin.is_valid(bad)
    with pytest.raises(nin.InvalidNIN, match="second check digit"):
        nin.validate(bad)


@pytest.mark.parametrize(
    "value",
    [
        SYNTH[:10],  # 10 digits
        SYNTH + "0",  # 12 digits
        SYNTH[:5] + "a" + SYNTH[6:],  # a letter
        SYNTH[:6] + " " + SYNTH[6:],  # a space inside
        " " + SYNTH,  # leading space
        SYNTH + "\n",  # trailing newline
        "",
        "abcdefghijk",
        None,
        12345678901,
    ],
)
def test_not_eleven_digits(value: object) -> None:
    assert not nin.is_valid(value)  # type: ignore[arg-type]
    with pytest.raises(nin.InvalidNIN, match="not 11 digits"):
        nin.validate(value)  # type: ignore[arg-type]


def test_non_ascii_digits_rejected() -> None:
    arabic_indic = "".join(chr(0x660 + int(c)) for c in SYNTH)
    assert not nin.is_valid(arabic_indic)


@pytest.mark.parametrize(
    "ddmmyy",
    [
        "171339",  # month 13
        "179339",  # synthetic month 13 (93)
        "320539",  # day 32
        "720539",  # D-number day 32
        "300239",  # 30 February
        "290239",  # 29 February in a non-leap year
        "000539",  # day 0
        "170039",  # month 0
    ],
)
def test_impossible_dates(ddmmyy: str) -> None:
    number = first_number(ddmmyy)  # check digits right, so the date is what fails
    assert not nin.is_valid(number)
    with pytest.raises(nin.InvalidNIN, match="birth date"):
        nin.validate(number)


@pytest.mark.parametrize(
    ("yy", "individual", "year"),
    [
        (85, 0, 1985),  # 000-499: 1900s
        (5, 499, 1905),
        (54, 500, 1854),  # 500-749 with yy >= 54: 1800s
        (99, 749, 1899),
        (39, 500, 2039),  # 500-999 with yy <= 39: 2000s
        (0, 999, 2000),
        (40, 900, 1940),  # 900-999 with yy >= 40: 1900s
        (99, 999, 1999),
    ],
)
def test_century_rules(yy: int, individual: int, year: int) -> None:
    number = complete(f"0181{yy:02d}{individual:03d}") or complete(f"0281{yy:02d}{individual:03d}")
    assert number is not None
    assert nin.birth_date(number).year == year
    assert nin.is_valid(number)


@pytest.mark.parametrize(("yy", "individual"), [(40, 500), (53, 749), (40, 750), (99, 899)])
def test_century_rules_leave_gaps(yy: int, individual: int) -> None:
    number = complete(f"0181{yy:02d}{individual:03d}") or complete(f"0281{yy:02d}{individual:03d}")
    assert number is not None
    with pytest.raises(nin.InvalidNIN, match="century"):
        nin.birth_date(number)
    assert not nin.is_valid(number)


def test_mask() -> None:
    assert nin.mask(SYNTH) == SYNTH[:6] + "*****"
    assert nin.mask(None) is None
    assert nin.mask("12345") == "*****"
    assert nin.mask("") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"elev {SYNTH} mangler", f"elev {SYNTH[:6]}***** mangler"),
        (SYNTH, SYNTH[:6] + "*****"),
        (f"nin={SYNTH};x", f"nin={SYNTH[:6]}*****;x"),
        (f"{SYNTH},{DNR}", f"{SYNTH[:6]}*****,{DNR[:6]}*****"),
        (f"ordre {SYNTH}0 ok", f"ordre {SYNTH}0 ok"),  # 12 digits: not a NIN
        (f"id {SYNTH[:10]}", f"id {SYNTH[:10]}"),  # 10 digits
        ("no numbers here", "no numbers here"),
    ],
)
def test_mask_text(text: str, expected: str) -> None:
    assert nin.mask_text(text) == expected


@st.composite
def date_and_individual(draw: st.DrawFn) -> tuple[dt.date, int]:
    born = draw(st.dates(dt.date(1940, 1, 1), dt.date(2030, 12, 31)))
    r = nin.individual_range(born.year)
    return born, draw(st.integers(r.start, r.stop - 1))


@given(date_and_individual())
def test_make_synthetic_is_valid(args: tuple[dt.date, int]) -> None:
    born, individual = args
    number = nin.make_synthetic(born, individual)
    if number is None:
        # None only where the classic rule has no K1 or K2 for these nine digits.
        nine = f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}{individual:03d}"
        assert complete(nine) is None
        return
    assert nin.is_valid(number)
    assert nin.kind(number) == "synthetic"
    assert nin.birth_date(number) == born
    assert int(number[6:9]) == individual


def test_make_synthetic_rejects_bad_individual() -> None:
    with pytest.raises(ValueError, match="0..999"):
        nin.make_synthetic(dt.date(2010, 1, 1), 1000)


@pytest.mark.parametrize(
    ("year", "expected"), [(1900, range(0, 500)), (1999, range(0, 500)), (2000, range(500, 1000))]
)
def test_individual_range(year: int, expected: range) -> None:
    assert nin.individual_range(year) == expected


def test_individual_range_outside_supported_years() -> None:
    with pytest.raises(ValueError, match="1899"):
        nin.individual_range(1899)


@pytest.mark.parametrize(
    ("born", "today", "valid"),
    [
        (dt.date(2025, 10, 1), dt.date(2025, 10, 1), True),  # born today
        (dt.date(2025, 10, 2), dt.date(2025, 10, 1), False),  # tomorrow
        (dt.date(2035, 1, 1), dt.date(2025, 10, 1), False),  # yy 35, individual 500-999: 2035
        (dt.date(1935, 1, 1), dt.date(2025, 10, 1), True),
    ],
)
def test_a_birth_date_after_the_day_is_invalid(born: dt.date, today: dt.date, valid: bool) -> None:
    number = next(n for i in nin.individual_range(born.year) if (n := nin.make_synthetic(born, i)))
    assert nin.is_valid(number)  # without a day, any real date will do
    assert nin.is_valid(number, today) is valid
    if not valid:
        with pytest.raises(nin.InvalidNIN, match="in the future"):
            nin.validate(number, today)


_SOME_NINS = [n for n in (nin.make_synthetic(dt.date(2011, 3, 4), i) for i in range(500, 520)) if n][:4]


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_SOME_NINS), st.text(alphabet='0123456789 ,:"{}aæ\U0001f600\x00', max_size=14)
        ),
        max_size=8,
    )
)
def test_mask_nins_finds_exactly_what_the_pattern_finds(parts: list[str]) -> None:
    # mask_nins searches with bytes operations for speed; it must mask exactly the
    # stand-alone 11-digit runs that are valid NINs, as the regular expression does.
    text = "".join(parts)
    assert nin.mask_nins(text) == nin._NIN_RUN.sub(nin._valid_mask, text)
