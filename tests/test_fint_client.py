"""The FINT client against the local fake FINT: tokens, retries, paging, TLS."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from sources.base import SourceError
from sources.fint import mapping as fm
from sources.fint.client import Credentials, FintClient
from tests.fake_fint import FakeFint
from tests.sisbuilder import small_sis
from tests.slapd_server import _make_certs


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFint]:
    server = FakeFint(tmp_path_factory.mktemp("fint-tls"), small_sis().snapshot())
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def client(
    fake: FakeFint, clock: Clock, *, secret: str | None = None, ca: str | None = None, **kw: object
) -> FintClient:
    creds = Credentials(
        fake.token_url, fake.client_id, secret if secret is not None else fake.client_secret,
        fake.username, fake.password,
    )  # fmt: skip
    return FintClient(
        fake.url,
        creds,
        ca_file=ca or str(fake.ca_file),
        sleep=clock.sleep,
        clock=clock.now,
        **kw,  # type: ignore[arg-type]
    )


def test_token_is_refreshed_before_it_expires(fake: FakeFint) -> None:
    clock = Clock()
    c = client(fake, clock)
    fake.grants.clear()
    c.last_updated(fm.SKOLE)
    c.last_updated(fm.SKOLE)
    assert fake.grants == ["password"]  # one token for both
    clock.t += 3600
    c.last_updated(fm.SKOLE)
    assert fake.grants == ["password", "refresh_token"]


def test_an_expired_token_is_renewed_once_on_401(fake: FakeFint) -> None:
    c = client(fake, Clock())
    c.cache_size(fm.SKOLE)
    fake.grants.clear()
    fake.expire_tokens()
    assert c.cache_size(fm.SKOLE) == 2
    assert fake.grants == ["password"]


def test_a_token_refused_right_after_issue_is_an_error_not_a_loop(
    fake: FakeFint, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Never(set[str]):
        def __contains__(self, item: object) -> bool:
            return False

    monkeypatch.setattr(fake, "tokens", Never())
    c = client(fake, Clock())
    fake.reset_counts()
    with pytest.raises(SourceError, match="refused the token"):
        c.cache_size(fm.SKOLE)
    assert fake.requests == 4  # token, GET (401), token, GET (401): then it stops


@pytest.mark.parametrize(("secret", "password"), [("wrong-secret", None), (None, "wrong-password")])
def test_refused_credentials_are_a_clear_error_without_the_secret(
    fake: FakeFint, secret: str | None, password: str | None
) -> None:
    c = client(fake, Clock(), secret=secret)
    if password is not None:
        c.creds = Credentials(fake.token_url, fake.client_id, fake.client_secret, fake.username, password)
    with pytest.raises(SourceError, match="token endpoint refused the credentials") as err:
        c.last_updated(fm.SKOLE)
    text = str(err.value)
    assert "wrong-secret" not in text and "wrong-password" not in text and fake.password not in text
    assert "invalid_client" in text or "invalid_grant" in text


def test_5xx_is_retried_with_growing_backoff_then_succeeds(fake: FakeFint) -> None:
    clock = Clock()
    c = client(fake, clock, max_attempts=4)
    c.last_updated(fm.SKOLE)
    fake.fail_next(3, status=503)
    assert c.cache_size(fm.SKOLE) == 2
    assert len(clock.slept) == 3
    assert clock.slept[0] < 1.0 <= clock.slept[1] < 2.0 <= clock.slept[2] < 4.0  # 0.5, 1, 2 plus jitter


def test_5xx_beyond_max_attempts_names_the_resource(fake: FakeFint) -> None:
    c = client(fake, Clock(), max_attempts=3)
    c.last_updated(fm.SKOLE)
    fake.fail_next(3, status=502)
    with pytest.raises(SourceError, match=r"elevforhold.*after 3 attempts \(HTTP 502\)"):
        list(c.entries(fm.ELEVFORHOLD, 10))
    fake.fail_next(0)


def test_other_4xx_is_an_error(fake: FakeFint) -> None:
    c = client(fake, Clock())
    with pytest.raises(SourceError, match="HTTP 404"):
        c.get("utdanning/elev/nosuchthing")


@pytest.mark.parametrize("page", [1, 2, 3, 5, 100])
def test_paging_reads_every_entry_in_ceil_n_over_page_requests(fake: FakeFint, page: int) -> None:
    c = client(fake, Clock())
    c.last_updated(fm.SKOLE)  # the token first
    n = fake.total_entries()[fm.ELEV_PERSON]
    before = c.requests
    got = list(c.entries(fm.ELEV_PERSON, page))
    assert len(got) == n
    assert len({g["_links"]["self"][0]["href"] for g in got}) == n
    assert c.requests - before == max(1, math.ceil(n / page))
    assert c.bytes > 0


def test_since_time_stamp_gives_only_changed_entries(fake: FakeFint) -> None:
    c = client(fake, Clock())
    since = c.last_updated(fm.ELEV_PERSON)
    assert list(c.entries(fm.ELEV_PERSON, 100, since=since)) == []
    pid = fake.snap.persons[0].person_id
    fake.update_person(pid, mobile="41234567")
    changed = list(c.entries(fm.ELEV_PERSON, 100, since=since))
    assert [e["kontaktinformasjon"]["mobiltelefonnummer"] for e in changed] == ["41234567"]
    assert c.last_updated(fm.ELEV_PERSON) > since


def test_tls_with_an_unknown_ca_is_refused(fake: FakeFint, tmp_path: Path) -> None:
    other_ca, _, _ = _make_certs(tmp_path / "other")
    c = client(fake, Clock(), ca=str(other_ca))
    with pytest.raises(SourceError, match="certificate verify failed"):
        c.last_updated(fm.SKOLE)
