"""The console's password reset with a real effect: `bas web`'s app served in this process
(uvicorn in a thread) on a state whose Microsoft 365 target applies to the local Graph.

Sessions are made here (the login flow has its own tests, tests/test_web.py), so each test
can act as a teacher, a school admin or an owner admin of the small SIS (tests/sisbuilder.py):
T1 teaches S1 and S2 (NORD-6A) and S1 and S3 (NORD-MAT); S4..S6 are at SOR; A1 is staff.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from structlog.testing import capture_logs

from provisioner.config import WebConfig
from provisioner.web import pages_password
from provisioner.web.access import OWNER_ADMIN, SCHOOL_ADMIN, TEACHER
from provisioner.web.app import create_app
from provisioner.web.oidc import Provider
from provisioner.web.sessions import Session, User
from tests.m365test import M365Env
from tests.sisbuilder import small_sis
from tests.webenv import csrf, free_port

DAY = "2025-10-01"


class Served:
    """The console's app on a free port, its M365Env, and sessions made for test users."""

    def __init__(self, env: M365Env) -> None:
        self.env = env
        cfg = env.cfg.model_copy(update={"web": WebConfig()})
        self.app = create_app(cfg, env.store, Provider(cfg.web.oidc, "", "http://127.0.0.1/cb", None))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)

    def as_user(self, user: User) -> requests.Session:
        """A requests session logged in as ``user`` (its session cookie made here)."""
        web = self.app.state.web
        key = web.sessions.add(Session(user, "id-token"))
        s = requests.Session()
        s.trust_env = False
        s.cookies.set("__Host-bas_session", web.signer.dumps(key))
        return s

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    env = M365Env(tmp_path, small_sis())
    try:
        assert env.sync(DAY).exit_code == 0
        s = Served(env)
        try:
            yield s
        finally:
            s.close()
    finally:
        env.close()


def teacher(served: Served) -> User:
    username = served.env.objects()["T1"]["username"]
    return User(f"{username}@demo.kommune.no", "Kari Lærer", TEACHER)


NORD_ADMIN = User("sub-nord", "Nina Nord", SCHOOL_ADMIN, ("NORD",))
OWNER = User("sub-owner", "Ola Owner", OWNER_ADMIN)


def _reset(served: Served, s: requests.Session, pid: str) -> requests.Response:
    form = s.get(f"{served.url}/people/{pid}/password")
    assert form.status_code == 200, form.text
    return s.post(f"{served.url}/people/{pid}/password", data={"csrf_token": csrf(form.text)})


def _changelog(served: Served) -> list[dict[str, Any]]:
    return [r for r in served.env.changelog() if r["op"] == "set_password"]


def test_a_teacher_resets_a_pupil_and_sees_the_password_once(served: Served) -> None:
    s = served.as_user(teacher(served))
    form = s.get(f"{served.url}/people/S1/password")
    assert form.status_code == 200
    username = served.env.objects()["S1"]["username"]
    assert "Ola Nordmann" in form.text and username in form.text and "Nord skole" in form.text
    with capture_logs() as logs:
        r = s.post(f"{served.url}/people/S1/password", data={"csrf_token": csrf(form.text)})
    assert r.status_code == 200, r.text
    secret = served.env.graph.directory.passwords[served.env.objects()["S1"]["anchor"]]
    assert f'<code id="new-password">{secret}</code>' in r.text
    assert (
        "Bytt passordet første gang du logger inn" in r.text
        and "Change this password when you first sign in" in r.text
    )
    assert '<script src="/static/password.js"' in r.text and "onclick" not in r.text
    assert r.headers["cache-control"] == "no-store" and secret not in r.url
    [row] = _changelog(served)
    assert row["reason"] == f"password reset by {teacher(served).user_id} (web console)"
    assert row["result"] == "ok" and row["key"] == "S1"
    [line] = [e for e in logs if e["event"] == "web.password_reset"]
    assert (
        line["user"] == teacher(served).user_id and line["person"] == "S1" and line["run_id"] == row["run_id"]
    )
    assert secret not in repr(logs)
    again = s.get(f"{served.url}/people/S1/password")
    assert secret not in again.text  # never retrievable again
    js = s.get(f"{served.url}/static/password.js")
    assert js.status_code == 200 and "window.print" in js.text


def test_a_teacher_is_refused_for_others_alike(served: Served) -> None:
    s = served.as_user(teacher(served))
    token = csrf(s.get(f"{served.url}/people/S1/password").text)
    answers = []
    for pid in ("S4", "A1", "T2", "NOBODY"):  # another school's pupil, staff, a teacher, no one
        got = s.get(f"{served.url}/people/{pid}/password")
        posted = s.post(f"{served.url}/people/{pid}/password", data={"csrf_token": token})
        assert got.status_code == posted.status_code == 403
        assert "Not for your role" in got.text
        answers.append(re.sub(r"\s+", " ", got.text))
    assert len(set(answers)) == 1  # the same answer, whether the person exists or not
    assert _changelog(served) == []


def test_a_school_admin_is_refused_for_another_schools_pupil(served: Served) -> None:
    s = served.as_user(NORD_ADMIN)
    token = csrf(s.get(f"{served.url}/people/S2/password").text)
    before = dict(served.env.graph.directory.passwords)
    assert s.get(f"{served.url}/people/S4/password").status_code == 403
    forged = s.post(f"{served.url}/people/S4/password", data={"csrf_token": token})
    assert forged.status_code == 403 and "Not for your role" in forged.text
    staff = s.post(f"{served.url}/people/A1/password", data={"csrf_token": token})
    assert staff.status_code == 403  # school admins reset pupils' passwords only
    assert served.env.graph.directory.passwords == before and _changelog(served) == []


def test_missing_csrf_is_refused(served: Served) -> None:
    s = served.as_user(NORD_ADMIN)
    r = s.post(f"{served.url}/people/S2/password", data={})
    assert r.status_code == 403 and "security token" in r.text
    r = s.post(f"{served.url}/people/S2/password", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert _changelog(served) == []


def test_resets_are_rate_limited_per_pupil_and_per_user(served: Served) -> None:
    now = [1000.0]
    served.app.state.password_limits = pages_password.Limits(clock=lambda: now[0])
    s = served.as_user(OWNER)
    for _ in range(3):
        assert _reset(served, s, "S2").status_code == 200
    limited = _reset(served, s, "S2")
    assert limited.status_code == 429 and "reset 3 times in the last ten minutes" in limited.text
    for pid in ("S1", "S3", "S4", "S5", "S6", "T1", "T2"):  # ten resets in all
        r = _reset(served, s, pid)
        assert r.status_code == 200, pid
    limited = _reset(served, s, "A1")
    assert limited.status_code == 429 and "You have reset 10 passwords" in limited.text
    assert len(_changelog(served)) == 10
    now[0] += pages_password.WINDOW + 1
    assert _reset(served, s, "A1").status_code == 200


def test_a_running_sync_answers_try_again(served: Served) -> None:
    s = served.as_user(NORD_ADMIN)
    form = s.get(f"{served.url}/people/S2/password")
    with served.env.store.runs.lock("a-sync-run"):
        r = s.post(f"{served.url}/people/S2/password", data={"csrf_token": csrf(form.text)})
    assert r.status_code == 503 and "Try again in a minute" in r.text
    assert _changelog(served) == []
