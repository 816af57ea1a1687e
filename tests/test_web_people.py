"""The People pages of a running `bas web` on the demo: search per role, the person page, lock and unlock.

Each role tries what it must not reach: another school's person by URL and by a forged
lock post carrying a valid CSRF token, a NIN search, a teacher's lock. Every page fetched
here is scanned for an unmasked 11-digit number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from urllib.parse import quote

import pytest
import requests

from provisioner.state.store import StateStore
from provisioner.web.pages_people import NIN_REFUSED, NOT_FOUND
from tests.webenv import OTHER_SCHOOL, OWNER, SCHOOL, TEACHER, Console, csrf, start_console

ELEVEN = re.compile(r"(?<![0-9])[0-9]{11}(?![0-9])")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("people")) as c:
        yield c


@pytest.fixture(scope="module")
def store(console: Console) -> Iterator[StateStore]:
    s = StateStore(console.state_url)
    yield s
    s.close()


def _one(store: StateStore, sql: str, **params: str) -> dict[str, str]:
    with store.engine.connect() as c:
        row = c.exec_driver_sql(sql, tuple(params.values())).mappings().first()
    assert row is not None, sql
    return dict(row)


def _only_at(store: StateStore, school: str, role: str) -> dict[str, str]:
    """An active person with this role at this school and nowhere else, with a NIN."""
    return _one(
        store,
        "SELECT p.person_id, p.username, p.display_name, i.nin FROM dir_persons p"
        " JOIN dir_affiliations a ON a.person_id = p.person_id"
        " JOIN identities i ON i.person_id = p.person_id"
        " WHERE a.school_id = ? AND a.role = ? AND p.active AND i.nin IS NOT NULL"
        " AND p.schools = a.school_id ORDER BY p.person_id LIMIT 1",
        school=school,
        role=role,
    )


@pytest.fixture(scope="module")
def pupil(store: StateStore) -> dict[str, str]:
    return _only_at(store, "SK001", "student")


@pytest.fixture(scope="module")
def other(store: StateStore) -> dict[str, str]:
    return _only_at(store, "SK002", "student")


@pytest.fixture(scope="module")
def taught(store: StateStore, console: Console) -> dict[str, str]:
    """A pupil of the demo teacher's groups."""
    return _one(
        store,
        "SELECT DISTINCT p.person_id, p.username, p.display_name FROM dir_members t"
        " JOIN dir_members s ON s.group_key = t.group_key AND s.role = 'student'"
        " JOIN dir_persons p ON p.person_id = s.person_id JOIN dir_persons tp ON tp.person_id = t.person_id"
        " WHERE t.role = 'teacher' AND tp.username = ? ORDER BY p.person_id LIMIT 1",
        username=console.teacher_username,
    )


class Seen:
    """Every page body fetched in this module, for the NIN scan."""

    bodies: list[str] = []


def _get(s: requests.Session, url: str, **kw: object) -> requests.Response:
    r = s.get(url, allow_redirects=False, **kw)  # type: ignore[arg-type]
    Seen.bodies.append(r.text)
    return r


def _search(console: Console, s: requests.Session, q: str, part: bool = False) -> requests.Response:
    token = csrf(_get(s, console.url + "/people").text)
    r = s.post(console.url + ("/people/part" if part else "/people"), data={"q": q, "csrf_token": token})
    Seen.bodies.append(r.text)
    return r


def _link(p: dict[str, str]) -> str:
    return f'href="/people/{quote(p["person_id"], safe="")}"'


def _url(console: Console, pid: str, suffix: str = "") -> str:
    return console.url + "/people/" + quote(pid, safe="") + suffix


def test_owner_finds_anyone_by_name_username_and_sis_id(
    console: Console, pupil: dict[str, str], other: dict[str, str]
) -> None:
    s, _ = console.login(OWNER)
    page = _get(s, console.url + "/people")
    assert page.status_code == 200
    assert "Name, username or SIS id, or national identity number" in page.text
    for q in (other["username"], other["person_id"], other["display_name"].upper()):
        r = _search(console, s, q)
        assert r.status_code == 200 and other["display_name"] in r.text, q
        assert _link(other) in r.text
    # The schools column names the school; a link with ?q= answers too.
    linked = _get(s, console.url + "/people", params={"q": pupil["username"]})
    assert pupil["display_name"] in linked.text and "active" in linked.text


def test_school_admin_search_is_scoped_to_their_schools(
    console: Console, pupil: dict[str, str], other: dict[str, str]
) -> None:
    s, _ = console.login(SCHOOL)
    page = _get(s, console.url + "/people")
    assert "Name, username or SIS id" in page.text and "national identity number" not in page.text
    mine = _search(console, s, pupil["username"])
    assert pupil["display_name"] in mine.text
    for q in (other["username"], other["person_id"], other["display_name"]):
        r = _search(console, s, q)
        assert r.status_code == 200 and _link(other) not in r.text and "Nobody found" in r.text
    part = _search(console, s, pupil["display_name"], part=True)
    assert "<html" not in part.text and pupil["display_name"] in part.text


def test_nin_search_only_for_owner_admins(console: Console, pupil: dict[str, str]) -> None:
    s, _ = console.login(SCHOOL)
    r = _search(console, s, pupil["nin"])
    assert r.status_code == 403 and NIN_REFUSED in unescape(r.text) and _link(pupil) not in r.text
    part = _search(console, s, pupil["nin"], part=True)
    assert NIN_REFUSED in unescape(part.text) and _link(pupil) not in part.text
    # Nor through the person page's URL: a NIN there is never looked up for them.
    assert _get(s, _url(console, pupil["nin"])).status_code == 404
    owner, _ = console.login(OWNER)
    found = _search(console, owner, pupil["nin"])
    assert found.status_code == 200 and pupil["display_name"] in found.text
    assert pupil["nin"] not in found.text and pupil["nin"][:6] + "*****" in found.text


def test_teacher_sees_their_pupils_by_group_and_only_them(
    console: Console, taught: dict[str, str], other: dict[str, str]
) -> None:
    s, _ = console.login(TEACHER)
    page = _get(s, console.url + "/people")
    assert page.status_code == 200 and "My pupils" in page.text
    assert _link(taught) in page.text and "Pupils of " in page.text
    assert _link(other) not in page.text
    assert _link(taught) in _search(console, s, taught["username"]).text
    assert "Nobody found" in _search(console, s, other["username"]).text
    person = _get(s, _url(console, taught["person_id"]))
    assert person.status_code == 200 and taught["display_name"] in person.text
    assert "/password" in person.text and "/lock" not in person.text
    assert _get(s, _url(console, other["person_id"])).status_code == 404


def test_person_page_for_own_school_not_for_another(
    console: Console, pupil: dict[str, str], other: dict[str, str]
) -> None:
    s, _ = console.login(SCHOOL)
    page = _get(s, _url(console, pupil["person_id"]))
    assert page.status_code == 200
    for part in ("Source facts (SIS)", "Accounts", "History", "Enrolled at", "Reset password", "Lock"):
        assert part in page.text, part
    assert pupil["nin"] not in page.text and pupil["nin"][:6] + "*****" in page.text
    theirs = _get(s, _url(console, other["person_id"]))
    nobody = _get(s, _url(console, "no-such-person"))
    assert theirs.status_code == nobody.status_code == 404
    assert NOT_FOUND in theirs.text and NOT_FOUND in nobody.text
    assert other["display_name"] not in theirs.text


def test_forged_lock_posts_are_refused(
    console: Console, store: StateStore, taught: dict[str, str], other: dict[str, str]
) -> None:
    s, _ = console.login(SCHOOL)
    token = csrf(_get(s, console.url + "/people").text)
    for action in ("lock", "unlock"):
        r = s.post(
            _url(console, other["person_id"], "/" + action),
            data={"csrf_token": token, "reason": "forged"},
            allow_redirects=False,
        )
        assert r.status_code == 403, action
    t, _ = console.login(TEACHER)
    token = csrf(_get(t, console.url + "/people").text)
    r = t.post(
        _url(console, taught["person_id"], "/lock"),
        data={"csrf_token": token, "reason": "forged"},
        allow_redirects=False,
    )
    assert r.status_code == 403
    assert store.local.locks([other["person_id"], taught["person_id"]]) == []


def test_lock_and_unlock_by_the_schools_admin(
    console: Console, store: StateStore, pupil: dict[str, str]
) -> None:
    s, _ = console.login(SCHOOL)
    url = _url(console, pupil["person_id"])
    token = csrf(_get(s, url).text)
    empty = s.post(url + "/lock", data={"csrf_token": token, "reason": " "}, allow_redirects=False)
    assert empty.status_code == 400 and "A lock needs a reason." in empty.text
    assert store.local.locks([pupil["person_id"]]) == []
    store.daemons.report(
        pid=1, started_at="2026-11-30T00:00:00", next_run_at="2026-12-01T02:00:00", state="idle"
    )
    r = s.post(
        url + "/lock",
        data={"csrf_token": token, "reason": "laptop stolen", "until": "2099-12-31", "target": ""},
        allow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?done=locked")
    back = _get(s, console.url + r.headers["location"])
    assert "The next run disables their accounts" in back.text and "laptop stolen" in back.text
    assert "The next run is at 2026-12-01 02:00." in back.text
    assert "Unlock" in back.text
    (made,) = store.local.locks([pupil["person_id"]])
    assert made.by == "sub-school (web)" and made.until == "2099-12-31" and made.in_force("2026-01-01")
    r = s.post(url + "/unlock", data={"csrf_token": token}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=unlocked")
    assert "enables the accounts" in _get(s, console.url + r.headers["location"]).text
    (released,) = store.local.locks([pupil["person_id"]])
    assert released.released_by == "sub-school (web)" and not released.in_force("2026-01-01")
    audit = store.local.audit([pupil["person_id"]])
    assert [a["by"] for a in audit] == ["sub-school (web)", "sub-school (web)"]
    again = s.post(url + "/unlock", data={"csrf_token": token}, allow_redirects=False)
    assert again.headers["location"].endswith("?done=not_locked")


def test_other_school_admin_locks_their_own_only(
    console: Console, store: StateStore, pupil: dict[str, str], other: dict[str, str]
) -> None:
    s, _ = console.login(OTHER_SCHOOL)
    assert _get(s, _url(console, pupil["person_id"])).status_code == 404
    page = _get(s, _url(console, other["person_id"]))
    assert page.status_code == 200 and other["display_name"] in page.text
    bad = s.post(
        _url(console, other["person_id"], "/lock"),
        data={"csrf_token": csrf(page.text), "reason": "x", "until": "31.12.2099"},
        allow_redirects=False,
    )
    assert bad.status_code == 400 and "must be a date" in bad.text
    assert store.local.locks([other["person_id"]]) == []


def test_lock_in_one_target_by_the_owner(console: Console, store: StateStore, other: dict[str, str]) -> None:
    s, _ = console.login(OWNER)
    page = _get(s, _url(console, other["person_id"]))
    targets = re.findall(r'<option value="([^"]+)">', page.text)
    assert targets, "the demo has a target that can disable"
    r = s.post(
        _url(console, other["person_id"], "/lock"),
        data={"csrf_token": csrf(page.text), "reason": "on leave", "target": targets[0]},
        allow_redirects=False,
    )
    assert r.status_code == 303
    (made,) = store.local.locks([other["person_id"]])
    assert made.target == targets[0] and made.by == "sub-owner (web)" and made.until is None
    bad = s.post(
        _url(console, other["person_id"], "/lock"),
        data={"csrf_token": csrf(page.text), "reason": "x", "target": "no-such-target"},
        allow_redirects=False,
    )
    assert bad.status_code == 400 and "no enabled target" in bad.text


def test_person_page_survives_an_unreachable_sis(console: Console, pupil: dict[str, str]) -> None:
    s, _ = console.login(SCHOOL)
    sis = console.demo / "sis.sqlite"
    sis.rename(sis.with_suffix(".away"))
    try:
        page = _get(s, _url(console, pupil["person_id"]))
    finally:
        sis.with_suffix(".away").rename(sis)
    assert page.status_code == 200 and "The SIS cannot be read just now" in page.text
    assert "Accounts per target" in page.text and "Enrolled at" not in page.text


def test_no_unmasked_nin_in_any_page(console: Console, store: StateStore, pupil: dict[str, str]) -> None:
    s, _ = console.login(OWNER)
    # A few persons' pages besides the ones the other tests fetched (guardians carry NINs too).
    with store.engine.connect() as c:
        ids = [
            r[0] for r in c.exec_driver_sql("SELECT person_id FROM dir_persons ORDER BY person_id LIMIT 8")
        ]
    for pid in [*ids, pupil["person_id"]]:
        assert _get(s, _url(console, pid)).status_code == 200
    assert len(Seen.bodies) > 20
    for body in Seen.bodies:
        assert ELEVEN.search(body) is None, ELEVEN.search(body)
