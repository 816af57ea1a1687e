"""The web console in a real Chromium (tests/browser.py) on the demo, per role, at desktop and phone size.

A person's path through `bas web` (tests/webenv.py: the demo, the local OpenID Connect
provider, TLS from the CA the browser trusts): log in by keyboard through the provider's
form as an owner admin, a school admin and a teacher, each landing on their page; find a
person and read their history; a school admin typing another school's person into the
address bar gets the refusal page; data quality; logout ends the session (back and reload
land on the login form). tests/test_browser_web_runs.py does the runs, the approval of a
held run and the changelog with the helpers here. Every page visited is checked for
controls without a ``<label>`` and for sideways overflow (on a phone: the page fits
390 px), and saved as a screenshot under tests/artifacts/screenshots/<test>/.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser import DESKTOP, PHONE, Browser
from tests.webenv import OTHER_SCHOOL_ID, OWNER, PASSWORD, SCHOOL, SCHOOL_ID, TEACHER, Console, start_console

pytestmark = pytest.mark.browser
SIZES = ["desktop", "phone"]


@pytest.fixture(scope="module")
def console(test_ca: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("browser-web"), ca_pair=test_ca) as c:
        c.fake.preselect(None)  # every login goes through the form
        yield c


def one(console: Console, sql: str, **params: str) -> tuple[str, ...]:
    """The first row of a query on the demo's state store (SQLite)."""
    with closing(sqlite3.connect(console.demo / "state.sqlite")) as db:
        row = db.execute(sql, params).fetchone()
    assert row is not None, sql
    return tuple(str(v) for v in row)


def checked(b: Browser, step: str) -> None:
    """This page: every control labelled, nothing sideways off the screen; its screenshot saved."""
    unlabelled = b.driver.execute_script(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
        ".filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)"
    )
    assert unlabelled == [], f"controls without a <label> on {b.url}: {unlabelled}"
    wide, inner = b.driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert inner == (PHONE if b.size == "phone" else DESKTOP)[0], f"laid out {inner}px wide"
    assert wide <= inner, f"{b.url} is {wide}px wide in a {inner}px viewport"
    b.shot(step)


def _headings(d: WebDriver) -> list[str]:
    """The texts of the page's main h1s; none while the page is being replaced under them."""
    try:
        return [h.text for h in d.find_elements(By.CSS_SELECTOR, "main h1")]
    except StaleElementReferenceException:
        return []  # read while the next page replaced it: the caller looks again
    except WebDriverException as exc:
        # chromedriver's other word for a stale element, when the node goes between
        # finding it and reading its text ("Node with given id does not belong to the document")
        if "does not belong to the document" in (exc.msg or ""):
            return []
        raise


def heading(b: Browser, text: str, timeout: float = 10) -> None:
    """Wait until the page's h1 reads ``text``."""
    try:
        WebDriverWait(b.driver, timeout).until(lambda d: text in _headings(d))
    except TimeoutException:
        b.shot(f"no-heading-{text}")
        found = [h.text for h in b.driver.find_elements(By.CSS_SELECTOR, "h1")]
        raise AssertionError(f"no h1 {text!r} on {b.url} (found {found})") from None


def log_in(b: Browser, console: Console, user: str, size: str, landing: str) -> None:
    """Open the console, get sent to the provider's form, log in there by keyboard, and land
    on the page headed ``landing``."""
    if size == "phone":
        b.phone()
    b.open(console.url + "/")
    b.wait_until_url(console.fake.url + "/authorize")
    b.wait_for("form")
    assert b.driver.title == "Logg inn"
    checked(b, "login-form")
    b.fill("Brukernavn", user)
    b.fill("Passord", PASSWORD)
    b.press(Keys.ENTER)
    b.wait_until_url(console.url)
    heading(b, landing)


def nav(b: Browser) -> list[str]:
    """The main navigation's link texts."""
    return [a.text for a in b.driver.find_elements(By.CSS_SELECTOR, "nav[aria-label=Main] a")]


def follow(b: Browser, text: str) -> None:
    """Click the link with exactly this text and wait for the page headed the same."""
    b.driver.find_element(By.LINK_TEXT, text).click()
    heading(b, text)


LANDINGS = [  # who logs in, where they land, their main navigation, how the header names them
    (OWNER, "Overview", ["Overview", "Runs", "People", "Changelog", "Data quality"], "(owner admin)"),
    (SCHOOL, "People", ["People", "Changelog", "Data quality"], f"(school admin: {SCHOOL_ID})"),
    (TEACHER, "My pupils", ["My pupils"], "(teacher)"),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("user", "landing", "links", "named"), LANDINGS, ids=["owner", "school", "teacher"])
def test_each_role_logs_in_by_keyboard_and_lands_on_its_page(
    browser: Browser, console: Console, size: str, user: str, landing: str, links: list[str], named: str
) -> None:
    log_in(browser, console, user, size, landing)
    assert browser.url == console.url + ("/" if user == OWNER else "/people")
    assert nav(browser) == links
    current = browser.driver.find_elements(By.CSS_SELECTOR, "nav[aria-label=Main] a[aria-current=page]")
    assert [a.text for a in current] == [landing]
    assert named in browser.driver.find_element(By.CSS_SELECTOR, ".who").text
    if user == TEACHER:  # their pupils are listed at once, per SIS group
        assert browser.driver.find_elements(By.CSS_SELECTOR, "#results table caption"), "no pupils listed"
    checked(browser, landing.lower().replace(" ", "-"))


@pytest.mark.parametrize("size", SIZES)
def test_a_school_admin_reads_data_quality(browser: Browser, console: Console, size: str) -> None:
    log_in(browser, console, SCHOOL, size, "People")
    follow(browser, "Data quality")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "main table caption, main .notice")
    checked(browser, "data-quality")


@pytest.mark.parametrize("size", SIZES)
def test_the_owner_finds_a_person_and_reads_their_history(
    browser: Browser, console: Console, size: str
) -> None:
    pid, name = one(
        console,
        "SELECT person_id, display_name FROM dir_persons WHERE schools = :school AND active = 1"
        " AND roles = 'student' ORDER BY person_id LIMIT 1",
        school=SCHOOL_ID,
    )
    log_in(browser, console, OWNER, size, "Overview")
    follow(browser, "People")
    browser.fill("Name, username or SIS id, or national identity number", name)
    browser.press(Keys.ENTER)
    link = browser.wait_for(f"#results a[href='/people/{pid}']")
    checked(browser, "search-results")
    link.click()
    heading(browser, name)
    assert browser.url == f"{console.url}/people/{pid}"
    history = browser.driver.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=history] tbody tr")
    assert history, "no history on the person page"
    assert any("create" in row.text for row in history)
    checked(browser, "person")


def test_a_school_admin_typing_another_schools_person_gets_the_refusal_page(
    browser: Browser, console: Console
) -> None:
    (other,) = one(
        console,
        "SELECT person_id FROM dir_persons WHERE schools = :school ORDER BY person_id LIMIT 1",
        school=OTHER_SCHOOL_ID,
    )
    (own,) = one(
        console,
        "SELECT person_id FROM dir_persons WHERE schools = :school AND roles = 'student'"
        " ORDER BY person_id LIMIT 1",
        school=SCHOOL_ID,
    )
    log_in(browser, console, SCHOOL, "desktop", "People")
    browser.open(console.url + "/overview/part")  # typed into the address bar: owner admins only
    heading(browser, "Not for your role")
    checked(browser, "refused-overview-part")
    browser.open(console.url + "/")
    heading(browser, "People")  # the Overview sends them on
    browser.open(f"{console.url}/people/{own}")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=history]")
    checked(browser, "own-schools-person")
    browser.open(f"{console.url}/people/{other}")
    heading(browser, "No such person in your schools")  # the same page for an id nobody has
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=history]")
    assert other not in browser.driver.find_element(By.TAG_NAME, "main").text
    checked(browser, "other-schools-person-refused")


@pytest.mark.parametrize("size", SIZES)
def test_logout_ends_the_session_back_and_reload_land_on_the_login(
    browser: Browser, console: Console, size: str
) -> None:
    (pid,) = one(console, "SELECT person_id FROM dir_persons WHERE active = 1 ORDER BY person_id LIMIT 1")
    log_in(browser, console, OWNER, size, "Overview")
    browser.open(f"{console.url}/people/{pid}")  # a page with personal data, then logout
    browser.wait_for("section[aria-labelledby=history]")
    browser.driver.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
    heading(browser, "Logged out")
    assert console.fake.ended_sessions, "the provider's session did not end"
    checked(browser, "logged-out")
    browser.driver.back()
    browser.wait_until_url(console.fake.url + "/authorize")
    assert browser.driver.title == "Logg inn"
    browser.shot("back-after-logout")
    assert pid not in browser.driver.page_source  # the person page did not come back from a cache
    browser.driver.refresh()
    browser.wait_for("form")
    assert browser.driver.title == "Logg inn"
    browser.open(console.url + "/people")
    browser.wait_until_url(console.fake.url + "/authorize")
