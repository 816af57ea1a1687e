"""A school admin resets a pupil's password in a real browser, and it reaches the directory.

The console (`bas web`, a subprocess with its own TLS, tests/webenv.py's provider and roles)
runs on a state whose AD target applies to the real Samba DC (tests/samba_dc.py): a sync
first gives the pupil an AD account, then the school admin logs in, opens the pupil's reset
page, confirms, sees the new password once (screenshots at desktop and phone size), and the
test binds to Samba over LDAPS as the pupil with it; the password from the first sync no
longer binds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.adtest import ADEnv, can_bind
from tests.browser import Browser
from tests.fake_oidc import FakeOidc
from tests.sisbuilder import Sis
from tests.slapd_server import _make_certs
from tests.test_password_ad import initial_password
from tests.webenv import PASSWORD, SCHOOL, SCHOOL_ID, Console, _wait, _web_toml, free_port, stop

pytestmark = pytest.mark.browser
DAY = "2025-10-01"


def _sis() -> Sis:
    """One school with the console's school admin's id, a class with two pupils and a teacher."""
    s = Sis()
    s.school(SCHOOL_ID, "974000001", "NORDBY")
    s.student("S1", SCHOOL_ID, "Ola", "Nordmann")
    s.student("S2", SCHOOL_ID, "Kari", "Hansen")
    s.employee("T1", SCHOOL_ID, "Kari", "Lærer")
    s.group(
        "G-6A", SCHOOL_ID, "basis", "6A", members=[("S1", "student"), ("S2", "student"), ("T1", "teacher")]
    )
    return s


@pytest.fixture()
def console(tmp_path: Path, samba_dc, test_ca: tuple[Path, Path]) -> Iterator[tuple[Console, ADEnv]]:
    env = ADEnv(tmp_path, samba_dc, _sis(), force_change_password_on_reset=False)
    fake = FakeOidc(tmp_path / "oidc", ca_pair=test_ca)
    proc = None
    try:
        assert env.sync(DAY).exit_code == 0
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        fake.add_user(SCHOOL, PASSWORD, name="Siri School", email="siri@example.org", sub="sub-school")
        client = fake.add_client("bas-web", [url + "/auth/callback"], post_logout_redirect_uris=[url + "/"])
        secret = tmp_path / "web.secret"
        secret.write_text(client.client_secret, encoding="utf-8")
        ca, cert, key = _make_certs(tmp_path / "tls", test_ca)
        cfg = tmp_path / "bas.toml"
        cfg.write_text(cfg.read_text(encoding="utf-8") + _web_toml(port, url, cert, key, fake, secret))
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli", "--config", str(cfg), "web"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        c = Console(url, ca, fake, cfg, tmp_path, "")
        _wait(c, proc)
        yield c, env
    finally:
        # Whatever happens, the test's AD objects go: group names are unique in the whole
        # domain, so a group left behind would make the next AD test's sync fail.
        try:
            if proc is not None:
                stop(proc)
        finally:
            fake.close()
            env.close()


def test_a_school_admin_resets_a_pupils_password_and_it_binds(
    console: tuple[Console, ADEnv], browser: Browser
) -> None:
    c, env = console
    dn = env.user("S1", ("cn",))[0]
    old = initial_password(env, env.objects()["S1"]["username"])
    assert can_bind(env.dc, dn, old)

    browser.open(c.url + "/login")
    browser.wait_for("form")
    browser.fill("Brukernavn", SCHOOL)
    browser.fill("Passord", PASSWORD)
    browser.press(Keys.ENTER)
    browser.wait_until_url(c.url)
    browser.open(c.url + "/people/S1/password")
    button = browser.wait_for("form button[type=submit].danger")
    assert "Ola Nordmann" in browser.driver.page_source
    browser.shot("reset-form")
    button.send_keys(Keys.ENTER)  # by keyboard: the button takes Enter
    shown = browser.wait_for("#new-password").text
    browser.shot("new-password")
    browser.phone()
    browser.shot("new-password")
    letter = browser.driver.find_element(By.CSS_SELECTOR, ".letter").text
    assert shown in letter and "Bytt passordet første gang du logger inn" in letter
    browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    browser.shot("printed-letter")  # the letter alone: no navigation, no on-screen copy
    assert not browser.driver.find_element(By.CSS_SELECTOR, "header").is_displayed()
    assert not browser.driver.find_element(By.CSS_SELECTOR, "#new-password").is_displayed()
    assert browser.driver.find_element(By.CSS_SELECTOR, ".letter").is_displayed()
    browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})

    assert can_bind(env.dc, dn, shown)
    assert not can_bind(env.dc, dn, old)
    with env.store.engine.connect() as conn:
        logged = conn.exec_driver_sql(
            "SELECT op, key, reason, after FROM changelog WHERE op = 'set_password'"
        )
        assert [tuple(r) for r in logged] == [
            ("set_password", "S1", "password reset by sub-school (web console)", None)
        ]
    browser.desktop()
    browser.open(c.url + "/people/S1/password")  # never shown again
    browser.wait_for("form button[type=submit].danger")
    assert shown not in browser.driver.page_source
