"""The Data quality page of a running `bas web`: each school's SIS data errors, per role, and its CSV.

The demo's SIS has no broken records, so this module spoils a few with demo/broken.py
before a `bas sync`: a SK001 pupil's NIN made invalid (the pupil is frozen, their accounts
kept), a membership of an unknown person (11 digits, masked on the page) in a SK002
group, and a group at a school the SIS does not have (no school known: owner admins
only). SK002's name is made to start with "=" so the CSV must neutralise it.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from demo.broken import UNKNOWN_MEMBER, Broken, break_records
from provisioner.web.pages_quality import FIXES, GENERIC, KEPT, fix_for
from tests.test_cli import bas
from tests.webenv import OTHER_SCHOOL, OWNER, SCHOOL, TEACHER, Console, start_console

ROOT = Path(__file__).resolve().parents[1]
ELEVEN = re.compile(r"(?<![0-9])[0-9]{11}(?![0-9])")


def _break_sis(sis: Path) -> Broken:
    """demo.broken's records, and SK002's name starting with "=" (for the CSV)."""
    broken = break_records(f"sqlite:///{sis}")
    with sqlite3.connect(sis) as db:
        db.execute("UPDATE school SET name = '=Andre skole' WHERE school_id = 'SK002'")
    return broken


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("quality")) as c:
        c.broken = _break_sis(c.demo / "sis.sqlite")  # type: ignore[attr-defined]
        bas("sync", config=c.cfg, check=None)  # held or not, the derivation updates the directory
        yield c


def _sections(html: str) -> list[str]:
    return re.findall(r'<h2 id="school-\d+">([^<]*)', unescape(html))


def _names(html: str) -> list[str]:
    return [re.split(r" \(|:", n)[0] for n in _sections(html)]


def test_owner_sees_every_school_and_no_school_known_last(console: Console) -> None:
    s, _ = console.login(OWNER)
    page = s.get(console.url + "/quality")
    assert page.status_code == 200
    text = unescape(page.text)
    names = _sections(page.text)
    assert _names(page.text) == [_names(page.text)[0], "=Andre skole", "No school known"]
    assert "(SK001)" in names[0] and "(SK002)" in names[1]
    for kind in ("invalid_nin", "unknown_person", "unknown_school"):
        assert kind in text and FIXES[kind] in text, kind
    assert f"person:{console.broken.pupil}" in text and KEPT in text  # type: ignore[attr-defined]
    assert UNKNOWN_MEMBER[:6] + "*****" in text and ELEVEN.search(page.text) is None
    assert "123456*****" in text  # the invalid NIN, masked by derive already
    only = s.get(console.url + "/quality", params={"school": "SK002"})
    assert _names(only.text) == ["=Andre skole"]
    assert 'value="SK002" selected' in only.text
    nowhere = s.get(console.url + "/quality", params={"school": "_none"})
    assert _sections(nowhere.text) == ["No school known: 1 error"] and "G-NOWHERE" in nowhere.text


def test_school_admin_sees_their_school_only(console: Console) -> None:
    s, _ = console.login(SCHOOL)
    page = s.get(console.url + "/quality")
    assert page.status_code == 200
    (section,) = _sections(page.text)
    assert "(SK001)" in section
    text = unescape(page.text)
    assert "invalid_nin" in text and KEPT in text
    assert "unknown_person" not in text and "G-NOWHERE" not in text and "Andre skole" not in text
    for url in ("/quality", "/quality.csv"):
        for school in ("SK002", "_none"):
            r = s.get(console.url + url, params={"school": school})
            assert r.status_code == 403 and "not one of yours" in r.text, (url, school)
    o, _ = console.login(OTHER_SCHOOL)
    theirs = unescape(o.get(console.url + "/quality").text)
    assert "unknown_person" in theirs and "invalid_nin" not in theirs


def test_teacher_has_no_quality_page(console: Console) -> None:
    s, _ = console.login(TEACHER)
    for url in ("/quality", "/quality.csv"):
        r = s.get(console.url + url)
        assert r.status_code == 403 and "invalid_nin" not in r.text


def test_csv_masked_and_neutralised(console: Console) -> None:
    s, _ = console.login(OWNER)
    r = s.get(console.url + "/quality.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and r.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["kind"] for row in rows} >= {"invalid_nin", "unknown_person", "unknown_school"}
    assert ELEVEN.search(r.text) is None and UNKNOWN_MEMBER[:6] + "*****" in r.text
    sk002 = [row for row in rows if row["school_id"] == "SK002"]
    assert sk002 and all(row["school"] == "'=Andre skole" for row in sk002)
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    kept = [row for row in rows if row["kind"] == "invalid_nin"]
    assert kept and kept[0]["accounts"] == KEPT and kept[0]["what_to_fix"] == FIXES["invalid_nin"]
    mine, _ = console.login(SCHOOL)
    theirs = list(csv.DictReader(io.StringIO(mine.get(console.url + "/quality.csv").text)))
    assert theirs and {row["school_id"] for row in theirs} == {"SK001"}


def _kinds_in_source() -> set[str]:
    """Every DataError kind the core can report (literals, and the kinds built from column names)."""
    # Built from column names: f"bad_{column}" (codes) and f"duplicate_{key}" (ids).
    kinds = {"bad_role", "bad_kind", "duplicate_school", "duplicate_group"}
    for name in ("derive.py", "validate.py", "local.py"):
        text = (ROOT / "provisioner" / "core" / name).read_text(encoding="utf-8")
        kinds |= set(re.findall(r'DataError\(\s*"([a-z_]+)"', text))
        kinds |= set(re.findall(r'_Problem\("([a-z_]+)"', text))
        kinds |= set(re.findall(r'return "([a-z_]+)", ', text))
        kinds |= set(re.findall(r'\("(missing_value|bad_[a-z]+)", "', text))
    return kinds


def test_every_error_kind_has_a_fix_in_plain_words() -> None:
    kinds = _kinds_in_source()
    assert {"invalid_nin", "duplicate_nin", "missing_name", "unknown_person", "local_person"} <= kinds
    assert kinds - {"bad_code"} <= set(FIXES), kinds - set(FIXES)  # bad_code is renamed bad_<column>
    assert fix_for("something_new") == GENERIC
    for text in FIXES.values():
        assert text.endswith(".") and "_" not in text
