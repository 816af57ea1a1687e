"""The runs pages and the changelog of the web console in a real Chromium, on the demo with a held run.

Before the console starts (tests/webenv.py), a low ``max_deletes`` ([safety], appended after
``[web]``) and five pupils leaving ``HELD_SCHOOL`` give a held sync. The owner admin sees
it on the Overview and the Runs page, opens it and approves it (the changes reach the
changelog); a school admin typing the runs into the address bar is refused; a school
admin reads the changelog of their schools. Desktop and phone size, every page checked
and photographed by tests/test_browser_web.py's helpers.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.browser import Browser
from tests.test_browser_web import SIZES, checked, follow, heading, log_in, one
from tests.test_cli import bas
from tests.webenv import OWNER, SCHOOL, Console, start_console

pytestmark = pytest.mark.browser
HELD_SCHOOL = "SK003"  # its leavers make the held run
HOLD = "\n[safety]\nmax_deletes = 2\n"  # appended after [web]: a new table, so valid TOML


@pytest.fixture(scope="module")
def console(test_ca: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("browser-runs"), ca_pair=test_ca, extra_toml=HOLD) as c:
        c.fake.preselect(None)  # every login goes through the form
        yield c


@pytest.fixture(scope="module")
def held_run(console: Console) -> str:
    """A sync held by ``max_deletes``: five pupils of ``HELD_SCHOOL`` left yesterday."""
    sis = sqlite3.connect(console.demo / "sis.sqlite")
    with sis:
        sis.execute(
            "UPDATE student_enrollment SET end_date = date('now', '-1 day') WHERE person_id IN"
            " (SELECT person_id FROM student_enrollment WHERE end_date IS NULL AND school_id = ?"
            " ORDER BY person_id LIMIT 5)",
            (HELD_SCHOOL,),
        )
    sis.close()
    held = re.search(r"run (\S+): held", bas("sync", config=console.cfg, check=3).stdout)
    assert held is not None
    return held.group(1)


@pytest.mark.parametrize("size", SIZES)
def test_the_owner_admin_sees_the_held_run(
    browser: Browser, console: Console, held_run: str, size: str
) -> None:
    log_in(browser, console, OWNER, size, "Overview")
    assert held_run in browser.driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=held]").text
    checked(browser, "overview-with-a-held-run")
    follow(browser, "Runs")
    row = browser.wait_for(f"a[href='/runs/{held_run}']")
    assert "held" in row.find_element(By.XPATH, "./ancestor::tr").text
    checked(browser, "runs")
    row.click()
    heading(browser, f"Run {held_run}")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "form.approve button")
    checked(browser, "held-run")


def test_the_owner_admin_approves_the_held_run(browser: Browser, console: Console, held_run: str) -> None:
    log_in(browser, console, OWNER, "desktop", "Overview")
    browser.open(f"{console.url}/runs/{held_run}")
    heading(browser, f"Run {held_run}")
    browser.shot("before-approving")
    button = browser.wait_for("form.approve button")
    assert button.text == f"Approve run {held_run}"
    button.click()
    outcome = browser.wait_for("[role=status]")
    assert outcome.text.startswith("Approved"), outcome.text
    assert "bad" not in (outcome.get_attribute("class") or "")
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "form.approve")
    checked(browser, "approved")
    (deleted,) = one(console, "SELECT count(*) FROM changelog WHERE target = 'feide' AND op = 'delete'")
    assert deleted == "5"


@pytest.mark.parametrize("size", SIZES)
def test_a_school_admin_reads_the_changelog_of_their_schools(
    browser: Browser, console: Console, size: str
) -> None:
    log_in(browser, console, SCHOOL, size, "People")
    follow(browser, "Changelog")
    caption = browser.wait_for("main table caption").text
    assert "your schools" in caption, caption
    checked(browser, "changelog")


def test_a_school_admin_typing_the_runs_gets_refused(
    browser: Browser, console: Console, held_run: str
) -> None:
    log_in(browser, console, SCHOOL, "desktop", "People")
    for path in ("/runs", f"/runs/{held_run}"):  # typed into the address bar: owner admins only
        browser.open(console.url + path)
        heading(browser, "Not for your role")
        assert held_run not in browser.driver.find_element(By.TAG_NAME, "main").text
    checked(browser, "refused-run")
