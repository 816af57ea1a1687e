"""scripts/demo-web.sh's building blocks (tests/demo_console.py): the demo's console as a person starts it.

On a demo folder: the provider and `bas web` start, web.toml is the demo's config plus
``[web]`` (bas.toml untouched, so `bas demo` reruns), keys and the client secret are 0600,
the banner names the URL, the CA and each login's password, and each printed login gets
in through the provider's password form (no preselected user) to the page its role has.
"""

from __future__ import annotations

import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.demo_console import DemoLogin, banner, demo_console
from tests.test_cli import bas
from tests.webenv import Console, free_port


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo-web") / "bas-demo"
    out = bas("demo", "--dir", str(folder)).stdout
    assert f"BAS_DEMO_DIR={folder} bash scripts/demo-web.sh" in out  # the demo's hint names its folder
    return folder


@pytest.fixture(scope="module")
def started(demo: Path) -> Iterator[tuple[Console, list[DemoLogin]]]:
    with demo_console(demo, free_port()) as (console, logins, _proc):
        yield console, logins


def through_the_form(console: Console, login: DemoLogin) -> tuple[requests.Session, requests.Response]:
    """Log in as a person does: /login, the provider's form with the printed password, back."""
    s = console.client()
    console.fake.preselect(None)
    r = s.get(console.url + "/login", allow_redirects=False)
    assert r.status_code == 303, r.text
    form = s.get(r.headers["location"], verify=str(console.fake.ca_file))
    assert 'for="username"' in form.text and 'for="password"' in form.text
    request_id = re.search(r'name="request_id" value="([^"]+)"', form.text)
    assert request_id is not None, form.text
    answer = s.post(
        console.fake.url + "/login",
        data={"request_id": request_id.group(1), "username": login.username, "password": login.password,
              "action": "login"},
        allow_redirects=False, verify=str(console.fake.ca_file),
    )  # fmt: skip
    assert answer.status_code in (302, 303), answer.text
    back = s.get(answer.headers["location"], allow_redirects=False)
    assert back.status_code == 200, back.text
    return s, back


def test_the_banner_names_the_url_the_ca_and_every_login(started: tuple[Console, list[DemoLogin]]) -> None:
    console, logins = started
    text = banner(console, logins)
    assert console.url in text and str(console.ca) in text and "Ctrl+C" in text
    assert [u.role.split(" ")[0] for u in logins] == ["owner", "school", "teacher"]
    for u in logins:
        assert re.search(rf"{re.escape(u.username)}\s+{re.escape(u.password)}\s", text)
    assert logins[2].username == console.teacher_username  # the demo teacher logs in as themselves


def test_web_toml_is_the_demo_config_plus_web_and_secrets_are_private(
    demo: Path, started: tuple[Console, list[DemoLogin]]
) -> None:
    console, _ = started
    demo_cfg = tomllib.loads((demo / "bas.toml").read_text(encoding="utf-8"))
    web_cfg = tomllib.loads(console.cfg.read_text(encoding="utf-8"))
    assert "web" not in demo_cfg
    assert {k: v for k, v in web_cfg.items() if k != "web"} == demo_cfg
    assert web_cfg["web"]["public_url"] == console.url
    assert web_cfg["web"]["oidc"]["issuer"] == console.fake.issuer
    private = [demo / "web-oidc.secret", *(demo / "web-tls").rglob("*.key")]
    assert len(private) >= 4  # the secret, the CA's key, the console's and the provider's keys
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((demo / "web-tls").stat().st_mode) == 0o700


def test_each_printed_login_gets_in_through_the_form(started: tuple[Console, list[DemoLogin]]) -> None:
    console, logins = started
    owner, school, teacher = logins
    s, back = through_the_form(console, owner)
    assert "Logged in" in back.text
    home = s.get(console.url + "/", allow_redirects=False)
    assert home.status_code == 200 and "<h1>Overview</h1>" in home.text and "owner admin" in home.text
    for login, shown in ((school, "school admin: SK001"), (teacher, "teacher")):
        s, _ = through_the_form(console, login)
        home = s.get(console.url + "/", allow_redirects=False)
        assert home.status_code == 303 and home.headers["location"] == "/people"
        refused = s.get(console.url + "/overview/part")  # owner admins only: refused, with who you are
        assert refused.status_code == 403 and shown in refused.text
    # The teacher's Feide name found their BAS person: their pupils are listed by group.
    assert "Pupils of " in s.get(console.url + "/people").text
    wrong = DemoLogin(owner.username, owner.password + "x", owner.role)
    with pytest.raises(AssertionError):
        through_the_form(console, wrong)


def test_a_second_start_keeps_the_ca_and_the_demo_reruns(demo: Path, started: object) -> None:
    """The CA a person trusted stays; `bas demo` over the folder keeps working and leaves it."""
    ca = (demo / "web-tls" / "ca.pem").read_bytes()
    bas("demo", "--dir", str(demo))
    assert "web" not in tomllib.loads((demo / "bas.toml").read_text(encoding="utf-8"))
    with demo_console(demo, free_port()) as (console, logins, _proc):
        assert (demo / "web-tls" / "ca.pem").read_bytes() == ca
        _, back = through_the_form(console, logins[0])
        assert "Logged in" in back.text
