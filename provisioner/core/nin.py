"""Norwegian national identity numbers (fødselsnummer, D-, H- and synthetic numbers).

Validation follows the rules in SPEC: 11 digits, two mod-11 check digits, the 2032
check-digit rule for K1, D-numbers (day + 40), H-numbers and synthetic test numbers
(month + 40 or + 80), and a birth date that exists (and, given the run's day, has
passed). Masking keeps the first six digits only, which is all a log or a default
changelog line may show.
"""

from __future__ import annotations

import datetime as dt
import re

from provisioner.core.jsontext import DIGITS_MARKED

W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)

_ELEVEN_DIGITS = re.compile(r"[0-9]{11}")
# Eleven digits standing alone: what masking looks for in free text.
_NIN_IN_TEXT = re.compile(r"(?<![0-9])([0-9]{6})[0-9]{5}(?![0-9])")
_NIN_RUN = re.compile(r"(?<![0-9])[0-9]{11}(?![0-9])")


class InvalidNIN(ValueError):
    """A NIN that fails validation; the message says why (without the number)."""


def _check_digit(digits: list[int], weights: tuple[int, ...]) -> int | None:
    """Classic mod-11 check digit, or None where the rule gives 10 (no valid digit)."""
    k = 11 - sum(w * d for w, d in zip(weights, digits)) % 11
    if k == 11:
        return 0
    return None if k == 10 else k


def birth_date(nin: str) -> dt.date:
    """The birth date a NIN encodes (D-, H- and synthetic offsets removed)."""
    return _birth_date(list(map(int, nin)))


def _birth_date(d: list[int]) -> dt.date:
    day = d[0] * 10 + d[1]
    month = d[2] * 10 + d[3]
    yy = d[4] * 10 + d[5]
    individual = d[6] * 100 + d[7] * 10 + d[8]
    if day > 40:
        day -= 40  # D-number
    if month > 80:
        month -= 80  # synthetic (Tenor)
    elif month > 40:
        month -= 40  # H-number or synthetic (NAV)
    if individual <= 499:
        century = 1900
    elif individual <= 749 and yy >= 54:
        century = 1800
    elif yy <= 39:
        century = 2000
    elif individual >= 900:
        century = 1900
    else:
        raise InvalidNIN("individual number and year give no valid century")
    try:
        return dt.date(century + yy, month, day)
    except ValueError as exc:
        raise InvalidNIN("encodes no real birth date") from exc


def validate(nin: str, today: dt.date | None = None) -> str:
    """Return the NIN if valid, else raise InvalidNIN with a reason (the number is not echoed).

    With ``today`` (a run's as_of day), a NIN whose birth date lies after it is invalid too.
    """
    if not isinstance(nin, str) or not _ELEVEN_DIGITS.fullmatch(nin):
        raise InvalidNIN("not 11 digits")
    d = list(map(int, nin))
    # Inlined weighted sums: this runs for every person in every run.
    s1 = 3 * d[0] + 7 * d[1] + 6 * d[2] + d[3] + 8 * d[4] + 9 * d[5] + 4 * d[6] + 5 * d[7] + 2 * d[8]
    if (s1 + d[9]) % 11 not in (0, 1, 2, 3):
        raise InvalidNIN("first check digit is wrong")
    s2 = (
        5 * d[0]
        + 4 * d[1]
        + 3 * d[2]
        + 2 * d[3]
        + 7 * d[4]
        + 6 * d[5]
        + 5 * d[6]
        + 4 * d[7]
        + 3 * d[8]
        + 2 * d[9]
    )
    k2 = 11 - s2 % 11
    if (0 if k2 == 11 else k2) != d[10]:  # k2 == 10 never equals a digit
        raise InvalidNIN("second check digit is wrong")
    born = _birth_date(d)
    if today is not None and born > today:
        raise InvalidNIN("encodes a birth date in the future")
    return nin


def is_valid(nin: str, today: dt.date | None = None) -> bool:
    """True when validate() accepts the NIN."""
    try:
        validate(nin, today)
    except InvalidNIN:
        return False
    return True


def kind(nin: str) -> str:
    """fnr | dnr | hnr | synthetic, for a NIN already validated."""
    if int(nin[0]) >= 4:
        return "dnr"
    month = int(nin[2:4])
    if month > 80:
        return "synthetic"
    if month > 40:
        return "hnr"  # also NAV's synthetic numbers; the two cannot be told apart
    return "fnr"


def mask(nin: str | None) -> str | None:
    """First six digits and five stars: all a log or default report may show."""
    if nin is None:
        return None
    if len(nin) <= 6:
        return "*" * len(nin)
    return nin[:6] + "*" * (len(nin) - 6)


def mask_text(text: str) -> str:
    """Mask every stand-alone 11-digit number in free text."""
    return _NIN_IN_TEXT.sub(lambda m: m.group(1) + "*****", text)


def _stored_mask(m: re.Match[str]) -> str:
    s, text = m.group(0), m.string
    if is_valid(s):
        return s[:6] + "*****"
    # An invalid 11-digit number (a mistyped NIN in a source row) is masked too, unless a
    # letter touches it: then it is part of a digest or an identifier, not a NIN.
    before = text[m.start() - 1] if m.start() else " "
    after = text[m.end()] if m.end() < len(text) else " "
    return s if before.isalpha() or after.isalpha() else s[:6] + "*****"


def _valid_mask(m: re.Match[str]) -> str:
    s = m.group(0)
    return s[:6] + "*****" if is_valid(s) else s


# Digits become 0xFF (jsontext.DIGITS_MARKED), a byte UTF-8 never holds: a run of eleven
# of them is a run of digits.
_RUN11 = b"\xff" * 11


def mask_nins(text: str) -> str:
    """Mask every stand-alone 11-digit number that is a valid NIN (structured data we store).

    Other numbers (ids, counts, digests) are left as they are, so a masked changelog row
    still names the objects and members it is about. The same as ``_NIN_RUN.sub`` with
    ``_valid_mask``, but found with bytes operations in C: every changelog row passes here
    (about a million on an Oslo-size first run), and the regular expression costs ~10x more.
    """
    if len(text) < 11:  # a key or username: too short to hold one
        return text
    raw = text.encode("utf-8", "surrogatepass")
    marked = raw.translate(DIGITS_MARKED)
    i = marked.find(_RUN11)
    if i < 0:
        return text
    ascii_only = len(raw) == len(text)
    pieces: list[str] = []
    last = 0
    while i >= 0:  # i starts a run of digits: the search resumes after the previous run
        end = i + 11
        while end < len(marked) and marked[end] == 0xFF:
            end += 1
        if end - i == 11:
            digits = raw[i:end].decode("ascii")
            if is_valid(digits):
                at = i if ascii_only else len(raw[:i].decode("utf-8", "surrogatepass"))
                pieces += (text[last:at], digits[:6] + "*****")
                last = at + 11
        i = marked.find(_RUN11, end)
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def mask_error(text: str) -> str:
    """Mask NINs in an error text before it is stored (run records, changelog errors).

    A driver error may quote a whole source row: every valid NIN is masked, and so is
    any other stand-alone 11-digit number no letter touches (a NIN with a wrong check
    digit is still someone's number). Digits inside a hex or base64 digest stay.
    """
    return _NIN_RUN.sub(_stored_mask, text)


def make_synthetic(born: dt.date, individual: int) -> str | None:
    """A synthetic NIN (month + 80) with valid check digits, or None when this individual number has none.

    Synthetic numbers can never belong to a real person, which is why the demo and the
    tests use them.
    """
    if not 0 <= individual <= 999:
        raise ValueError("individual number is 0..999")
    base = f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}{individual:03d}"
    d = [int(c) for c in base]
    k1 = _check_digit(d, W1)
    if k1 is None:
        return None
    k2 = _check_digit(d + [k1], W2)
    if k2 is None:
        return None
    return base + str(k1) + str(k2)


def individual_range(year: int) -> range:
    """Individual numbers that encode the given birth year's century."""
    if 1900 <= year <= 1999:
        return range(0, 500)
    if 2000 <= year <= 2039:
        return range(500, 1000)
    raise ValueError(f"no synthetic NINs for birth year {year}")
