"""The Hypothesis profile chosen per environment (tests/conftest.py): derandomized in CI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import hypothesis_profile


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, "default"),
        ({"CI": "true"}, "ci"),
        ({"CI": "1"}, "ci"),
        ({"CI": "false"}, "default"),
        ({"CI": ""}, "default"),
        ({"HYPOTHESIS_PROFILE": "thorough"}, "thorough"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "thorough"}, "thorough"),
    ],
)
def test_profile_per_environment(env: dict[str, str], want: str) -> None:
    assert hypothesis_profile(env) == want


@pytest.mark.parametrize(
    ("env", "want"),
    [({"CI": "true"}, "True 100"), ({"HYPOTHESIS_PROFILE": "thorough"}, "False 1000")],
)
def test_the_profile_is_loaded_before_tests_build_their_settings(env: dict[str, str], want: str) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    code = (
        "import tests.conftest\n"
        "from hypothesis import settings\n"
        "print(settings().derandomize, settings().max_examples)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    assert p.stdout.strip() == want
