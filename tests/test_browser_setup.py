"""The browser tests' set-up without a browser: a missing Chromium fails them unless skipped on
purpose, and the CA pin Chromium gets is the key's SPKI hash as openssl computes it."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from tests import browser as b


def test_a_missing_chromium_or_driver_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(b, "CHROMIUM", str(tmp_path / "chromium"))
    assert "install Debian's chromium " in (b.browser_missing() or "")
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(b, "CHROMEDRIVER", str(tmp_path / "chromedriver"))
    assert "install Debian's chromium-driver" in (b.browser_missing() or "")


def test_unavailable_fails_and_skips_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAS_SKIP_BROWSER", raising=False)
    with pytest.raises(
        pytest.fail.Exception, match="browser tests cannot run: no chromium.*BAS_SKIP_BROWSER=1"
    ):
        b.not_available("no chromium")
    monkeypatch.setenv("BAS_SKIP_BROWSER", "0")
    with pytest.raises(pytest.fail.Exception):
        b.not_available("no chromium")
    monkeypatch.setenv("BAS_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception, match="BAS_SKIP_BROWSER=1: no chromium"):
        b.not_available("no chromium")


def test_the_ca_pin_is_the_spki_sha256(test_ca: tuple[Path, Path]) -> None:
    der = subprocess.run(
        f"openssl x509 -in {test_ca[0]} -pubkey -noout | openssl pkey -pubin -outform der",
        shell=True, check=True, capture_output=True,
    ).stdout  # fmt: skip
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-binary"], input=der, check=True, capture_output=True
    )
    assert b.spki_hash(test_ca[0]) == base64.b64encode(digest.stdout).decode()


def test_artifacts_go_where_bas_test_artifacts_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BAS_TEST_ARTIFACTS", raising=False)
    assert b.artifacts_dir() == Path(b.__file__).resolve().parent / "artifacts"
    monkeypatch.setenv("BAS_TEST_ARTIFACTS", str(tmp_path))
    assert b.artifacts_dir() == tmp_path
