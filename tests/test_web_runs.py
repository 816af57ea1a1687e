"""The console's runs pages (provisioner/web/pages_runs.py) on a running `bas web` and the demo.

The demo's config gets ``[safety] max_deletes = 2`` so ending a few enrollments in the
demo SIS and running `bas sync` holds the run; the owner admin approves it in the console,
and a held run whose source changed since is refused with the runner's reason.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
from collections.abc import Iterator

import pytest

from tests.test_cli import bas
from tests.webenv import OTHER_SCHOOL, OWNER, SCHOOL, TEACHER, Console, csrf, start_console

NIN = re.compile(r"(?<!\d)\d{11}(?!\d)")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("webruns"), extra_toml="\n[safety]\nmax_deletes = 2\n") as c:
        yield c


def _runs(console: Console) -> list[str]:
    con = sqlite3.connect(console.demo / "state.sqlite")
    try:
        return [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started_at, run_id")]
    finally:
        con.close()


def _end_enrollments(console: Console, n: int, offset: int) -> None:
    sis = sqlite3.connect(console.demo / "sis.sqlite")
    sis.execute(
        "UPDATE student_enrollment SET end_date = date('now', '-1 day') WHERE person_id IN"
        " (SELECT person_id FROM student_enrollment WHERE end_date IS NULL AND grade >= 8"
        f" ORDER BY person_id LIMIT {n} OFFSET {offset})"
    )
    sis.commit()
    sis.close()


def _held_run(console: Console, offset: int) -> str:
    _end_enrollments(console, 5, offset)
    p = bas("sync", config=console.cfg, check=3)
    m = re.search(r"run (\S+): held", p.stdout)
    assert m, p.stdout + p.stderr
    return m.group(1)


def _count(console: Console, sql: str) -> int:
    con = sqlite3.connect(console.demo / "state.sqlite")
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_run_list_newest_first_with_the_cli_columns(console: Console) -> None:
    s, _ = console.login(OWNER)
    r = s.get(console.url + "/runs")
    assert r.status_code == 200
    first, second = _runs(console)[:2]
    assert r.text.index(second) < r.text.index(first)  # newest first
    for col in ("Run", "Kind", "Status", "Started", "As of", "Active", "Changes", "Data errors", "Note"):
        assert f'<th scope="col">{col}</th>' in r.text
    assert "<caption>" in r.text and 'href="/runs/' + first + '"' in r.text


def test_run_page_summary_changes_filters_and_paging(console: Console) -> None:
    s, _ = console.login(OWNER)
    first = _runs(console)[0]
    r = s.get(f"{console.url}/runs/{first}")
    assert r.status_code == 200
    assert "Planned changes" in r.text and "Results" in r.text and "Source gate" in r.text
    assert "employments: " in r.text  # the source counts
    assert not NIN.search(r.text)
    assert "Approve" not in r.text  # a done run
    older = re.search(r'href="(/runs/[^"]+before=\d+[^"]*)"', r.text)
    assert older, "the first run has more than 50 changes: an Older link"
    page1 = set(re.findall(r'<td class="key">([^<]+)</td>', r.text))
    r2 = s.get(console.url + older.group(1).replace("&amp;", "&"))
    page2 = set(re.findall(r'<td class="key">([^<]+)</td>', r2.text))
    assert page2 and not page1 & page2 and "Newer" in r2.text
    want = {"target": "core", "op": "create", "q": "username issued"}
    f = s.get(f"{console.url}/runs/{first}", params=want)
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td>", f.text)
    assert rows and set(rows) == {("core", "create")}
    assert "identity:P" in f.text and "username issued" in f.text
    assert not NIN.search(f.text)  # the core rows' after holds a masked NIN only
    none = s.get(f"{console.url}/runs/{first}", params={"q": "no such thing at all"})
    assert "No changes match." in none.text
    assert s.get(console.url + "/runs/no-such-run").status_code == 404


def test_other_roles_get_403_on_runs_and_a_forged_approve(console: Console) -> None:
    run_id = _runs(console)[0]
    for user in (SCHOOL, OTHER_SCHOOL, TEACHER):
        s, _ = console.login(user)
        for path in ("/runs", f"/runs/{run_id}", "/runs?before=" + run_id):
            r = s.get(console.url + path)
            assert r.status_code == 403 and "Not for your role" in r.text, (user, path)
            assert run_id not in r.text.replace(f"/runs/{run_id}", "")
        token = csrf(s.get(console.url + "/changelog").text)  # the logout form's valid token
        forged = s.post(f"{console.url}/runs/{run_id}/approve", data={"csrf_token": token})
        assert forged.status_code == 403 and "Not for your role" in forged.text, user


def test_held_run_shows_the_held_plan_and_approve_applies_it(console: Console) -> None:
    run_id = _held_run(console, 0)
    s, _ = console.login(OWNER)
    r = s.get(f"{console.url}/runs/{run_id}")
    assert r.status_code == 200 and "Held changes" in r.text and "held:" in r.text
    assert f'action="/runs/{run_id}/approve"' in r.text
    assert not NIN.search(r.text)  # the held plan carries whole NINs: masked here
    deletes = s.get(f"{console.url}/runs/{run_id}", params={"target": "feide", "op": "delete"})
    assert deletes.text.count("<tr><td>feide</td><td>delete</td>") == 5
    before = _count(console, "SELECT count(*) FROM changelog WHERE target='feide' AND op='delete'")
    approved = s.post(f"{console.url}/runs/{run_id}/approve", data={"csrf_token": csrf(r.text)})
    # Post-redirect-get: the answer is a redirect to the run page, which shows the outcome once.
    assert [h.status_code for h in approved.history] == [303], approved.text
    assert approved.status_code == 200 and "<strong>Approved</strong>" in approved.text
    reload = s.get(f"{console.url}/runs/{run_id}")
    assert "<strong>Approved</strong>" not in reload.text and "Approve run" not in reload.text
    after = _count(console, "SELECT count(*) FROM changelog WHERE target='feide' AND op='delete'")
    assert after == before + 5
    who = "sub-owner (web)"
    by = _count(console, f"SELECT count(*) FROM runs WHERE run_id='{run_id}' AND approved_by='{who}'")
    assert by == 1
    again = s.post(f"{console.url}/runs/{run_id}/approve", data={"csrf_token": csrf(r.text)})
    assert again.status_code == 200 and "Not approved" in again.text and "already approved" in again.text
    no_token = s.post(f"{console.url}/runs/{run_id}/approve", data={})
    assert no_token.status_code == 403


def test_stale_held_run_is_refused_with_the_runners_reason(console: Console) -> None:
    run_id = _held_run(console, 5)
    _end_enrollments(console, 1, 20)  # the source changes after the plan was made
    s, _ = console.login(OWNER)
    page = s.get(f"{console.url}/runs/{run_id}")
    before = _count(console, "SELECT count(*) FROM changelog")
    r = s.post(f"{console.url}/runs/{run_id}/approve", data={"csrf_token": csrf(page.text)})
    assert r.status_code == 200 and "Not approved" in r.text
    assert f"run {run_id} cannot be approved: the source" in r.text and "nothing was applied" in r.text
    assert _count(console, "SELECT count(*) FROM changelog") == before


def test_approve_while_a_run_holds_the_lock_says_so(console: Console) -> None:
    run_id = _held_run(console, 10)
    con = sqlite3.connect(console.demo / "state.sqlite")
    con.execute(
        "INSERT INTO locks VALUES ('run', 'other-run', ?, ?, '2026-01-01T00:00:00')",
        (socket.gethostname(), os.getpid()),
    )
    con.commit()
    try:
        s, _ = console.login(OWNER)
        page = s.get(f"{console.url}/runs/{run_id}")
        r = s.post(f"{console.url}/runs/{run_id}/approve", data={"csrf_token": csrf(page.text)})
        assert r.status_code == 200 and "a run is in progress" in r.text
        assert "other-run holds the lock" in r.text
    finally:
        con.execute("DELETE FROM locks")
        con.commit()
        con.close()


def test_a_source_refusal_is_approved_once(console: Console) -> None:
    sis = sqlite3.connect(console.demo / "sis.sqlite")
    sis.execute("UPDATE student_enrollment SET end_date = date('now', '-1 day') WHERE rowid % 2 = 0")
    sis.execute("UPDATE employment SET end_date = date('now', '-1 day') WHERE rowid % 2 = 0")
    sis.commit()
    sis.close()
    p = bas("sync", config=console.cfg, check=3)
    m = re.search(r"run (\S+): refused", p.stdout)
    assert m, p.stdout + p.stderr
    s, _ = console.login(OWNER)
    page = s.get(f"{console.url}/runs/{m.group(1)}")
    assert "Approving accepts this source snapshot once" in page.text
    r = s.post(f"{console.url}/runs/{m.group(1)}/approve", data={"csrf_token": csrf(page.text)})
    assert r.status_code == 200 and "source refusal approved: the next run accepts" in r.text
    assert "Approve run" not in r.text  # approved once: no form any more
