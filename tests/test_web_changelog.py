"""The console's changelog (provisioner/web/pages_changelog.py) on a running `bas web` and the demo.

Keyset paging through the page's links, the CLI's filters, the CSV export equal to
``bas changelog --format csv``, and scope: a school admin sees only rows about persons of
their schools whatever the URL asks; teachers get 403; NINs are masked or refused.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

import pytest

from tests.test_cli import bas
from tests.webenv import OWNER, SCHOOL, SCHOOL_ID, TEACHER, Console, start_console

NIN = re.compile(r"(?<!\d)\d{11}(?!\d)")
KEY = re.compile(r'<td class="key">\w+:([^<]+)</td>')


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("webchangelog")) as c:
        yield c


def _sql(console: Console, sql: str, *args: object) -> list[tuple]:
    con = sqlite3.connect(console.demo / "state.sqlite")
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _at_school(console: Console, school: str) -> set[str]:
    return {r[0] for r in _sql(console, "SELECT person_id FROM dir_affiliations WHERE school_id = ?", school)}


def _href(html: str, label: str) -> str | None:
    m = re.search(rf'<a href="([^"]+)" rel="\w+">{label}</a>', html)
    return m.group(1).replace("&amp;", "&") if m else None


def test_pages_older_and_newer_by_keyset(console: Console) -> None:
    s, _ = console.login(OWNER)
    r = s.get(console.url + "/changelog", params={"target": "itslearning"})
    assert r.status_code == 200 and _href(r.text, "Newer") is None
    ids: list[str] = []
    pages = [r.text]
    for _ in range(3):
        older = _href(pages[-1], "Older")
        assert older and "before=" in older and "target=itslearning" in older and "offset" not in older
        pages.append(s.get(console.url + older).text)
    for html in pages:
        keys = KEY.findall(html)
        targets = re.findall(r"</a></td><td>(\w+)</td>", html)
        assert len(keys) == 50 and set(targets) == {"itslearning"}
        ids += keys
    assert len(ids) == len(set(ids))  # no row twice
    newer = _href(pages[-1], "Newer")
    assert newer and "after=" in newer
    assert KEY.findall(s.get(console.url + newer).text) == KEY.findall(pages[-2])


def test_filters_of_the_cli(console: Console) -> None:
    s, _ = console.login(OWNER)
    r = s.get(console.url + "/changelog", params={"target": "feide", "op": "create", "result": "ok"})
    rows = re.findall(r"</a></td><td>(\w+)</td><td>(\w+)</td>", r.text)
    assert rows and set(rows) == {("feide", "create")}
    pid, user = _sql(console, "SELECT person_id, username FROM identities ORDER BY person_id LIMIT 1")[0]
    by_user = s.get(console.url + "/changelog", params={"person": user})
    assert {k for k in KEY.findall(by_user.text) if k.startswith("P")} == {pid}
    by_id = s.get(console.url + "/changelog", params={"person": pid})
    assert KEY.findall(by_id.text) == KEY.findall(by_user.text)
    run_id = _sql(console, "SELECT run_id FROM runs ORDER BY started_at LIMIT 1")[0][0]
    day = _sql(console, "SELECT substr(at, 1, 10) FROM changelog LIMIT 1")[0][0]
    in_run = s.get(console.url + "/changelog", params={"run": run_id, "since": day, "until": day})
    assert in_run.text.count(f">{run_id}</a>") == 50
    assert "No changes match." in s.get(console.url + "/changelog", params={"until": "2000-01-01"}).text
    assert not NIN.search(r.text + by_user.text)


def test_owner_nin_search_goes_by_person_id_and_others_are_refused(console: Console) -> None:
    pid, nin = _sql(console, "SELECT person_id, nin FROM person_nins ORDER BY person_id LIMIT 1")[0]
    s, _ = console.login(OWNER)
    r = s.get(console.url + "/changelog", params={"person": nin}, allow_redirects=False)
    to = r.headers["location"]
    assert r.status_code == 303 and nin not in to and f"person={pid}" in to
    shown = s.get(console.url + r.headers["location"])
    assert pid in shown.text and nin not in shown.text
    school, _ = console.login(SCHOOL)
    refused = school.get(console.url + "/changelog", params={"person": nin})
    assert "Only the owner" in refused.text and "No changes match." in refused.text
    assert nin not in refused.text
    assert school.get(console.url + "/changelog.csv", params={"person": nin}).status_code == 403
    # NIN-like text in any field is never written back into the page (inputs, links)
    for params in ({"run": nin}, {"person": f"x {nin}"}, {"run": nin, "target": "feide", "since": nin}):
        for who in (s, school):
            page = who.get(console.url + "/changelog", params=params)
            assert page.status_code == 200 and nin not in page.text, params
    missing = s.get(f"{console.url}/runs/{nin}")
    assert missing.status_code == 404 and nin not in missing.text


def test_csv_equals_the_cli_csv(console: Console) -> None:
    s, _ = console.login(OWNER)
    user = _sql(console, "SELECT username FROM identities ORDER BY person_id LIMIT 1 OFFSET 3")[0][0]
    for params in ({"target": "feide", "op": "create"}, {"person": user}, {}):
        r = s.get(console.url + "/changelog.csv", params=params)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"].startswith("attachment; filename=")
        args = [x for k, v in params.items() for x in (f"--{k}", v)]
        cli = bas("changelog", *args, "--format", "csv", "--limit", "100000", config=console.cfg).stdout
        assert cli[:-1] == r.text.replace("\r\n", "\n")  # the CLI echoes one newline more
        assert r.text.count("\r\n") > 1 and not NIN.search(r.text)


def test_school_admin_sees_only_rows_of_persons_at_their_schools(console: Console) -> None:
    mine = _at_school(console, SCHOOL_ID)
    others = _at_school(console, "SK002") - mine
    s, _ = console.login(SCHOOL)
    r = s.get(console.url + "/changelog")
    keys = KEY.findall(r.text)
    assert len(keys) == 50 and set(keys) <= mine
    older = _href(r.text, "Older")
    assert older and set(KEY.findall(s.get(console.url + older).text)) <= mine
    other = sorted(others)[0]
    user = _sql(console, "SELECT username FROM identities WHERE person_id = ?", other)[0][0]
    for params in ({"person": user}, {"person": other}, {"person": other, "target": "core"}):
        assert "No changes match." in s.get(console.url + "/changelog", params=params).text
        csv = s.get(console.url + "/changelog.csv", params=params).text
        assert csv.count("\r\n") == 1  # the header alone
    run_id = _sql(console, "SELECT run_id FROM runs ORDER BY started_at LIMIT 1")[0][0]
    csv = s.get(console.url + "/changelog.csv", params={"run": run_id}).text
    lines = csv.split("\r\n")[1:-1]
    assert lines and {line.split(",")[6] for line in lines} <= mine  # the key column
    assert f'href="/runs/{run_id}"' not in s.get(console.url + "/changelog").text  # no link to /runs


def test_teachers_get_403(console: Console) -> None:
    s, _ = console.login(TEACHER)
    for path in ("/changelog", "/changelog.csv", "/changelog?target=feide"):
        r = s.get(console.url + path)
        assert r.status_code == 403 and "Not for your role" in r.text
