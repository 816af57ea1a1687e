"""Name cleaning, display names and ASCII folding."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.core.names import clean, display_name, fold, is_usable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ola", "ola"),
        ("Ærlig Øystein Åse", "aerligoysteinaase"),
        ("æøå ÆØÅ", "aeoaaaeoaa"),
        ("Ødegård", "odegaard"),
        ("José Hélène Gaëtan", "josehelenegaetan"),
        ("è ê ë", "eee"),
        ("Müller Björk Mäkinen", "mullerbjorkmakinen"),
        ("Strauß ẞ", "straussss"),
        ("Sigurðardóttir Þór", "sigurdardottirthor"),
        ("Łukasz Wałęsa", "lukaszwalesa"),
        ("Čáhppes Đuolbmá Ŋuvttat Šiellat Ŧ Žá", "cahppesduolbmanuvttatsiellattza"),  # Sami
        ("čđŋšŧž ČĐŊŠŦŽ", "cdnstzcdnstz"),
        ("e\u0301", "e"),  # combining acute
        ("a\u030a", "aa"),  # decomposed å folds like the composed one
        ("o\u0308", "o"),  # decomposed ö
        ("O'Neil", "oneil"),
        ("D\u2019Angelo", "dangelo"),  # typographic apostrophe
        ("Berg-Olsen", "bergolsen"),
        ("van der Berg", "vanderberg"),
        ("Ola 😀", "ola"),
        ("😀🎉", ""),
        ("Anne-Marie (Mia)", "annemariemia"),
        ("Per 3.", "per3"),
        ("Ｏｌａ", "ola"),  # full-width letters via NFKD
        ("ﬁnn", "finn"),  # ligature via NFKD
        ("Œdipe", "oedipe"),
        ("Владимир", ""),  # Cyrillic has no ASCII decomposition: dropped
        ("", ""),
        (None, ""),
    ],
)
def test_fold(text: str | None, expected: str) -> None:
    assert fold(text) == expected


@given(st.text())
def test_fold_yields_only_ascii_lowercase_and_digits(text: str) -> None:
    assert re.fullmatch(r"[a-z0-9]*", fold(text))


@given(st.text())
def test_fold_ignores_normal_form(text: str) -> None:
    assert fold(unicodedata.normalize("NFD", text)) == fold(unicodedata.normalize("NFC", text))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("Ola", "Ola"),
        ("  Ola  ", "Ola"),
        ("Ola\t\tNordmann", "Ola Nordmann"),
        ("Kari\u00a0Nordmann", "Kari Nordmann"),  # non-breaking space
        ("Kari \u202f\u2007 Nordmann", "Kari Nordmann"),  # narrow and figure spaces
        ("Anne\nMarie\r\n", "Anne Marie"),
        ("Nord\u200bmann", "Nordmann"),  # zero-width space
        ("\ufeffOla", "Ola"),  # BOM
        ("Ola\x00", "Ola"),  # control character
        ("Anne - Marie", "Anne - Marie"),  # punctuation is kept for display
        ("a\u030a", "å"),  # NFC
        ("Ærlig", "Ærlig"),
    ],
)
def test_clean(value: str | None, expected: str) -> None:
    assert clean(value) == expected


@given(st.text())
def test_clean_is_idempotent_and_trimmed(text: str) -> None:
    once = clean(text)
    assert clean(once) == once
    assert once == once.strip()
    assert "  " not in once


@pytest.mark.parametrize(
    ("value", "usable"),
    [(None, False), ("", False), (" \t\u00a0", False), ("\u200b", False), ("Ola", True), ("😀", True)],
)
def test_is_usable(value: str | None, usable: bool) -> None:
    assert is_usable(value) is usable


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("Ola", None, "Nordmann"), "Ola Nordmann"),
        (("Ola", "", "Nordmann"), "Ola Nordmann"),
        ((" Kari ", " Anne\t", " Nordmann "), "Kari Anne Nordmann"),
        (("Anne  Marie", "Berg", "Olsen-Lie"), "Anne Marie Berg Olsen-Lie"),
        (("", None, "Nordmann"), "Nordmann"),
        (("Ola", None, ""), "Ola"),
        (("", None, ""), ""),
    ],
)
def test_display_name(parts: tuple[str, str | None, str], expected: str) -> None:
    assert display_name(*parts) == expected
