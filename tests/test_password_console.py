"""The password reset in `bas web` on the demo (tests/webenv.py): reach by role, CSRF, and the
demo's plan-only targets answering clearly that no live account can take a password.

The reset's real effect is tested against the local Graph (tests/test_password_web.py,
tests/test_password.py) and the Samba DC (tests/test_password_ad.py, the browser test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.webenv import OTHER_SCHOOL_ID, SCHOOL, SCHOOL_ID, TEACHER, Console, csrf, start_console


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("pwweb")) as c:
        yield c


def _one(console: Console, sql: str, **params: str) -> str:
    engine = sa.create_engine(console.state_url)
    try:
        with engine.connect() as c:
            row = c.execute(sa.text(sql), params).first()
    finally:
        engine.dispose()
    assert row is not None, sql
    return str(row[0])


def pupil_of_teacher(console: Console) -> str:
    return _one(
        console,
        "SELECT s.person_id FROM dir_members t JOIN dir_members s ON s.group_key = t.group_key"
        " JOIN dir_persons p ON p.person_id = t.person_id JOIN dir_groups g ON g.group_key = t.group_key"
        " WHERE p.username = :u AND t.role = 'teacher' AND s.role = 'student' AND g.school_id = :school"
        " ORDER BY 1 LIMIT 1",
        u=console.teacher_username,
        school=SCHOOL_ID,
    )


def person_at(console: Console, school: str, *, student: bool) -> str:
    """A student at ``school`` and not at SCHOOL_ID, or (``student`` False) someone who is no student."""
    others = "SELECT person_id FROM dir_affiliations WHERE " + (
        "school_id = :mine" if student else "role = 'student'"
    )
    where = f"role {'=' if student else '!='} 'student' AND person_id NOT IN ({others})"
    sql = f"SELECT person_id FROM dir_affiliations WHERE school_id = :s AND {where} ORDER BY 1 LIMIT 1"
    return _one(console, sql, s=school, mine=SCHOOL_ID)


def test_a_teacher_is_told_no_live_target_takes_a_password(console: Console) -> None:
    s, _ = console.login(TEACHER)
    pid = pupil_of_teacher(console)
    form = s.get(f"{console.url}/people/{pid}/password")
    assert form.status_code == 200 and "Reset the password of" in form.text
    r = s.post(f"{console.url}/people/{pid}/password", data={"csrf_token": csrf(form.text)})
    assert r.status_code == 409
    assert "no live target can take a password" in r.text and "mode = &#34;plan&#34;" in r.text
    assert 'id="new-password"' not in r.text


def test_a_teacher_cannot_reach_staff_or_other_pupils(console: Console) -> None:
    s, _ = console.login(TEACHER)
    token = csrf(s.get(f"{console.url}/people/{pupil_of_teacher(console)}/password").text)
    for pid in (
        person_at(console, OTHER_SCHOOL_ID, student=True),
        person_at(console, SCHOOL_ID, student=False),
        "nobody-at-all",
    ):
        assert s.get(f"{console.url}/people/{pid}/password").status_code == 403
        r = s.post(f"{console.url}/people/{pid}/password", data={"csrf_token": token})
        assert r.status_code == 403 and "Not for your role" in r.text


def test_a_school_admin_cannot_reach_another_schools_pupil(console: Console) -> None:
    s, _ = console.login(SCHOOL)
    mine = pupil_of_teacher(console)  # a pupil at the admin's school
    token = csrf(s.get(f"{console.url}/people/{mine}/password").text)
    other = person_at(console, OTHER_SCHOOL_ID, student=True)
    assert s.get(f"{console.url}/people/{other}/password").status_code == 403
    forged = s.post(f"{console.url}/people/{other}/password", data={"csrf_token": token})
    assert forged.status_code == 403 and "Not for your role" in forged.text
    missing = s.post(f"{console.url}/people/{mine}/password", data={})
    assert missing.status_code == 403 and "security token" in missing.text
