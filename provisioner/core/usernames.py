"""Username schemes, candidate generation and allocation; reading reserved-name CSVs.

Owns how a new username is made from a name: the scheme syntax (documented on
``config.UsernameConfig``), folding (``names.fold``), truncation to the length limit,
the collision counter, and picking the first free candidate for many persons at once.
Everything here is pure except ``read_reserved_csv``. Whether a person needs a new
username at all (returning persons keep theirs) is decided by the caller.

Choices a school IT admin will see:

* Name parts use folded letters only (digits in a name field are dropped, so digits in
  a username come only from ``{yy}``, the counter or literals).
* ``{given}`` uses the first given name only ("Ole-Martin Nils" -> "ole"), the first
  part that folds to at least one letter; ``{middle}`` and ``{family}`` use the whole
  field with spaces and hyphens dropped ("Berg-Olsen" -> "bergolsen", "van der Berg"
  -> "vanderberg"), so the username starts the way the family name is written.
* Over the length limit, name parts are shortened, longest first (so every part keeps
  some letters); literals, ``{yy}`` and the counter are never shortened.
* A person whose name parts all fold to nothing (empty, emoji only, a script with no
  ASCII folding) gets ``FALLBACK`` ("bruker") in place of the first name part.
* Literal scheme text may hold letters, digits and the separators ``.``, ``-``, ``_``;
  separators are dropped at the ends and where a name part is empty ("ola." -> "ola").
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from provisioner.core.names import fold

__all__ = [
    "ALWAYS_RESERVED",
    "FALLBACK",
    "Scheme",
    "UsernameRequest",
    "allocate",
    "candidates",
    "parse_scheme",
    "read_reserved_csv",
    "valid_username",
]

FALLBACK = "bruker"  # stands in for a name that folds to nothing
SEPARATORS = frozenset(".-_")
# Never issued even if free: AD built-ins and mailbox names RFC 2142 reserves (the
# username is also the local part of the mail address).
ALWAYS_RESERVED = frozenset(
    {"administrator", "admin", "guest", "krbtgt", "root", "postmaster", "abuse", "hostmaster", "webmaster"}
)
NAME_FIELDS = ("given", "middle", "family")
_SHORTHAND = {"g": ("given", 1), "f": ("family", 1)}
_VALID_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_GIVEN_SPLIT = re.compile(r"[\s\-\u2010-\u2015]+")  # spaces and hyphens/dashes
_RESERVED_HEADERS = ("username", "samaccountname", "uid", "brukernavn")

# A part of a scheme: ("lit", text) | ("given"|"middle"|"family", limit or None) | ("yy", None) | ("n", None)
Part = tuple[str, str | int | None]


@dataclass(frozen=True)
class Scheme:
    """A parsed username scheme; build it with parse_scheme()."""

    pattern: str
    parts: tuple[Part, ...]  # exactly one ("n", None)
    # Derived from parts once, for the hot loop in allocate().
    fields: tuple[Part, ...] = field(init=False, repr=False, compare=False)  # parts without {n}
    variable: tuple[bool, ...] = field(init=False, repr=False, compare=False)  # name parts: shortenable
    counter_at: int = field(init=False, repr=False, compare=False)  # index in fields where {n} goes
    has_separators: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = [k for k, _ in self.parts]
        fields_ = tuple(p for p in self.parts if p[0] != "n")
        object.__setattr__(self, "fields", fields_)
        object.__setattr__(self, "variable", tuple(k in NAME_FIELDS for k, _ in fields_))
        object.__setattr__(self, "counter_at", kinds.index("n"))
        object.__setattr__(
            self,
            "has_separators",
            any(k == "lit" and any(c in SEPARATORS for c in str(v)) for k, v in fields_),
        )


@dataclass(frozen=True)
class UsernameRequest:
    """One person who needs a new username."""

    person_id: str
    given: str | None
    middle: str | None
    family: str | None
    birth_year: int | None
    is_student: bool


def _parse_field(token: str, pattern: str) -> Part:
    name, sep, limit = token.strip().partition(":")
    name = name.strip()
    if name in ("n", "yy", "g", "f") and sep:
        raise ValueError(f"username scheme {pattern!r}: {{{name}}} takes no length")
    if name in ("n", "yy"):
        return (name, None)
    if name in _SHORTHAND:
        return _SHORTHAND[name]
    if name not in NAME_FIELDS:
        raise ValueError(
            f"username scheme {pattern!r}: unknown part {{{token}}}; "
            "known: {given[:N]} {middle[:N]} {family[:N]} {g} {f} {n} {yy}"
        )
    if not sep:
        return (name, None)
    limit = limit.strip()
    if not limit.isdigit() or not limit.isascii() or int(limit) < 1:
        raise ValueError(f"username scheme {pattern!r}: length in {{{token}}} must be a whole number >= 1")
    return (name, int(limit))


def _literal(text: str, pattern: str) -> str:
    out = []
    for ch in text:
        if ch in SEPARATORS:
            out.append(ch)
            continue
        folded = fold(ch)
        if not folded:
            raise ValueError(
                f"username scheme {pattern!r}: {ch!r} cannot be part of a username "
                "(literal text may hold letters, digits, '.', '-' and '_')"
            )
        out.append(folded)
    return "".join(out)


def parse_scheme(pattern: str) -> Scheme:
    """Parse a scheme like "{given:3}{family:3}{n}"; ValueError names the bad part."""
    parts: list[Part] = []
    pos = 0
    while pos < len(pattern):
        open_at = pattern.find("{", pos)
        close_at = pattern.find("}", pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise ValueError(f"username scheme {pattern!r}: '}}' at position {close_at} has no '{{'")
        end = len(pattern) if open_at == -1 else open_at
        if end > pos:
            parts.append(("lit", _literal(pattern[pos:end], pattern)))
        if open_at == -1:
            break
        close_at = pattern.find("}", open_at)
        nested = pattern.find("{", open_at + 1)
        if close_at == -1 or (nested != -1 and nested < close_at):
            raise ValueError(f"username scheme {pattern!r}: '{{' at position {open_at} is not closed")
        parts.append(_parse_field(pattern[open_at + 1 : close_at], pattern))
        pos = close_at + 1
    kinds = [k for k, _ in parts]
    if kinds.count("n") > 1:
        raise ValueError(f"username scheme {pattern!r}: {{n}} may appear only once")
    if not any(k in NAME_FIELDS for k in kinds) and not any(
        k == "lit" and any(c not in SEPARATORS for c in str(v)) for k, v in parts
    ):
        raise ValueError(f"username scheme {pattern!r}: needs a name part or literal letters")
    if "n" not in kinds:
        parts.append(("n", None))  # a collision counter must exist somewhere; the end is least surprising
    return Scheme(pattern=pattern, parts=tuple(parts))


# Digits in a name field are data-entry noise; dropping them keeps digits in a username
# meaning only {yy} or the counter, so "ola2" is always the second Ola.
_NO_DIGITS = str.maketrans("", "", "0123456789")


class _Folds:
    """The folded letters of the name fields one ``allocate`` call meets, each folded once.

    Names repeat a lot across 255,000 persons. The memo lives as long as the call, not the
    process: a module-wide cache kept its ~17,000 entries, made amid a first run's
    derivation and scattered over its heap, and each kept the arena it was in (1 MB) from
    being given back (at Oslo size, with the shifted window dates, ~160 MB of the run's
    memory while it applied, beside its worker processes).
    """

    __slots__ = ("_first", "_whole")

    def __init__(self) -> None:
        self._whole: dict[str, str] = {}
        self._first: dict[str, str] = {}

    def letters(self, name: str) -> str:
        """The folded letters of a whole name field ("Berg-Olsen" -> "bergolsen")."""
        got = self._whole.get(name)
        if got is None:
            got = self._whole[name] = fold(name).translate(_NO_DIGITS)
        return got

    def first_given(self, given: str) -> str:
        """The folded letters of the first given name that has any ("Ole-Martin" -> "ole")."""
        got = self._first.get(given)
        if got is None:
            got = self._first[given] = _first_word(given)
        return got


def _first_word(given: str) -> str:
    for word in _GIVEN_SPLIT.split(given):
        letters = fold(word).translate(_NO_DIGITS)
        if letters:
            return letters
    return ""


def _segments(
    scheme: Scheme,
    given: str | None,
    middle: str | None,
    family: str | None,
    year: int | None,
    folds: _Folds,
) -> tuple[str, ...]:
    """The text of each scheme field (no counter) for one person, before length limits.

    Together with the scheme this fixes the whole candidate sequence, so allocate()
    uses it as the memo key.
    """
    out: list[str] = []
    first_name_slot = -1
    for kind, arg in scheme.fields:
        if kind == "lit":
            out.append(str(arg))
        elif kind == "yy":
            out.append("" if year is None else f"{year % 100:02d}")
        else:
            if kind == "given":
                text = folds.first_given(given) if given else ""
            elif kind == "family":
                text = folds.letters(family) if family else ""
            else:
                text = folds.letters(middle) if middle else ""
            if first_name_slot < 0:
                first_name_slot = len(out)
            out.append(text[:arg] if isinstance(arg, int) else text)
    if first_name_slot >= 0 and not any(t for t, v in zip(out, scheme.variable) if v):
        out[first_name_slot] = FALLBACK
    return tuple(out)


def _fit(lengths: list[int], budget: int) -> list[int]:
    """Shorten the longest lengths first until they sum to at most budget."""
    if budget <= 0:
        return [0] * len(lengths)
    # Find the largest cap t with sum(min(l, t)) <= budget, then hand the remainder to
    # the earliest parts still longer than t (so given keeps a letter before family).
    cap = max(lengths)
    while sum(min(n, cap) for n in lengths) > budget:
        cap -= 1
    spare = budget - sum(min(n, cap) for n in lengths)
    out = []
    for n in lengths:
        if n > cap and spare > 0:
            out.append(cap + 1)
            spare -= 1
        else:
            out.append(min(n, cap))
    return out


def _tidy(parts: list[str]) -> str:
    """Join parts, keeping separators only between two non-empty pieces."""
    # A separator-only literal next to an empty part ("ola" "." "" "4") goes entirely,
    # so a missing family name gives "ola4", not "ola.4".
    kept = [
        part
        for i, part in enumerate(parts)
        if not (part and all(c in SEPARATORS for c in part))
        or (i > 0 and parts[i - 1] and i + 1 < len(parts) and parts[i + 1])
    ]
    out: list[str] = []
    for ch in "".join(kept):
        if ch in SEPARATORS and (not out or out[-1] in SEPARATORS):
            continue
        out.append(ch)
    while out and out[-1] in SEPARATORS:
        out.pop()
    return "".join(out)


def _generate(
    scheme: Scheme, segments: tuple[str, ...], max_length: int, min_counter: int, start: int = 0
) -> Iterator[str]:
    """The candidate sequence from position start (0 = no counter, k = counter min_counter + k - 1)."""
    variable, counter_at = scheme.variable, scheme.counter_at
    fixed = sum(len(s) for s, v in zip(segments, variable) if not v)
    var_idx = [i for i, v in enumerate(variable) if v]
    var_total = sum(len(segments[i]) for i in var_idx)
    pos = start
    while True:
        counter = "" if pos == 0 else str(min_counter + pos - 1)
        budget = max_length - fixed - len(counter)
        if budget < 0 or (budget == 0 and fixed == 0 and not counter):
            raise ValueError(f"no username fits in {max_length} characters with scheme {scheme.pattern!r}")
        parts = list(segments)
        if var_total > budget:
            for i, n in zip(var_idx, _fit([len(segments[i]) for i in var_idx], budget)):
                parts[i] = segments[i][:n]
        parts.insert(counter_at, counter)
        yield _tidy(parts) if scheme.has_separators else "".join(parts)
        pos += 1


def candidates(
    scheme: Scheme,
    given: str | None,
    middle: str | None,
    family: str | None,
    birth_year: int | None,
    max_length: int = 20,
    min_counter: int = 2,
) -> Iterator[str]:
    """Endless candidates: the base name, then counters min_counter, min_counter+1, ... all <= max_length."""
    if min_counter < 0:
        raise ValueError("min_counter must be >= 0")
    segments = _segments(scheme, given, middle, family, birth_year, _Folds())
    return _generate(scheme, segments, max_length, min_counter)


def allocate(
    requests: Iterable[UsernameRequest],
    taken: Container[str],
    scheme: Scheme,
    student_scheme: Scheme | None = None,
    max_length: int = 20,
    min_counter: int = 2,
) -> dict[str, str]:
    """Give each request a username not in taken, not ALWAYS_RESERVED, not given twice; person_id -> username.

    Deterministic: requests are handled in person_id order, each getting the first free
    candidate. ``taken`` holds lowercase usernames (historic base plus reserved files)
    and is only asked whether it holds a candidate (a patch asks the store, name by name,
    instead of loading them all). ValueError on a duplicate person_id.
    """
    if min_counter < 0:
        raise ValueError("min_counter must be >= 0")
    issued: dict[str, str] = {}
    # The never-issued and what this call has issued; ``taken`` is asked after them.
    blocked: set[str] = set(ALWAYS_RESERVED)
    # Per (scheme, segments), the first sequence position not yet known to be in use.
    # Names only become used during a call, so a skipped position never needs a second
    # look: a thousand "Ola Nordmann"s cost a thousand steps, not half a million.
    next_pos: dict[str, int] = {}
    folds = _Folds()
    for req in sorted(requests, key=attrgetter("person_id")):
        if req.person_id in issued:
            raise ValueError(f"duplicate person_id {req.person_id!r} in username requests")
        use_student = req.is_student and student_scheme is not None
        chosen = student_scheme if use_student and student_scheme is not None else scheme
        segments = _segments(chosen, req.given, req.middle, req.family, req.birth_year, folds)
        key = ("s\0" if use_student else "\0") + "\0".join(segments)  # a str hashes faster than a tuple
        pos = next_pos.get(key, 0)
        name = None
        if not chosen.has_separators:
            # Fast path, the common case: no shortening needed, so a candidate is just
            # prefix + counter + suffix. Falls through to _generate() when it stops fitting.
            at = chosen.counter_at
            prefix, suffix = "".join(segments[:at]), "".join(segments[at:])
            room = max_length - len(prefix) - len(suffix)
            while True:
                counter = "" if pos == 0 else str(min_counter + pos - 1)
                if len(counter) > room:
                    break
                pos += 1
                candidate = prefix + counter + suffix
                if candidate not in blocked and candidate not in taken:
                    name = candidate
                    break
        if name is None:
            for candidate in _generate(chosen, segments, max_length, min_counter, pos):
                pos += 1
                if candidate not in blocked and candidate not in taken:
                    name = candidate
                    break
        assert name is not None  # _generate is endless or raises
        next_pos[key] = pos
        blocked.add(name)
        issued[req.person_id] = name
    return issued


def valid_username(u: str) -> bool:
    """True for an acceptable imported username: lowercase ^[a-z0-9][a-z0-9._-]{0,63}$."""
    return isinstance(u, str) and _VALID_USERNAME.fullmatch(u) is not None


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")  # PowerShell's Out-File default
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel in Norway saves "CSV" as Windows-1252. Usernames are ASCII, so other
        # columns (display names with æøå) decoding slightly wrong cannot matter.
        return raw.decode("cp1252", errors="replace")


def _rows(reader: Any, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Rows with the line number they end on; a CSV syntax error becomes ValueError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: not readable as CSV: {exc}") from exc
        yield reader.line_num, row


def export_rows(path: str | Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows of a CSV export (old BAS, Excel, PowerShell's Export-Csv) as stripped cells.

    Decodes UTF-8/UTF-16/Windows-1252, sniffs ``;`` or ``,``, and skips PowerShell's
    "#TYPE ..." line above the header; yields (line number, cells). ValueError names the file.
    """
    p = Path(path)
    try:
        text = _decode(p.read_bytes())
    except OSError as exc:
        raise ValueError(f"{p}: cannot read {what}: {exc.strerror}") from exc
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#TYPE ")), "")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    started = False
    for line, row in _rows(reader, p):
        cells = [c.strip() for c in row]
        if not any(cells) or (not started and cells[0].startswith("#TYPE ")):
            continue
        started = True
        yield line, cells


def read_reserved_csv(path: str | Path) -> list[str]:
    """Usernames in use elsewhere from a CSV export, lowercased, in file order without duplicates."""
    p = Path(path)
    column: int | None = None
    seen: dict[str, None] = {}
    for line, cells in export_rows(p, "reserved usernames"):
        if column is None:
            lowered = [c.lower() for c in cells]
            header = next((lowered.index(h) for h in _RESERVED_HEADERS if h in lowered), None)
            if header is not None:
                column = header
                continue
            if len(cells) > 1:
                raise ValueError(
                    f"{p}:{line}: no username column; the header needs one of "
                    f"{', '.join(_RESERVED_HEADERS)} (or give a single column without header)"
                )
            column = 0  # one column, no header: this row is already data
        value = cells[column].lower() if column < len(cells) else ""
        if not value:
            continue
        if not valid_username(value):
            raise ValueError(f"{p}:{line}: invalid username {value!r}")
        seen[value] = None
    return list(seen)
