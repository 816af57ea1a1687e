"""`bas web` end to end: a running console on the demo's state, logging in through tests/fake_oidc.py.

The console runs as `bas web` in a subprocess on a free 127.0.0.1 port with its own TLS (a
throw-away CA), so Secure cookies travel as in a browser; requests drives it, one redirect
at a time, against the local OpenID Connect provider.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from tests.fake_oidc import FakeOidc
from tests.webenv import OWNER, SCHOOL, STRANGER, Console, start_console
from tests.webenv import csrf as _csrf


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with start_console(tmp_path_factory.mktemp("web")) as c:
        yield c


def test_owner_admin_logs_in_and_sees_the_overview(console: Console) -> None:
    s, back = console.login(OWNER)
    assert back.status_code == 200 and 'http-equiv="refresh"' in back.text
    cookie = back.headers["set-cookie"]
    assert "__Host-bas_session=" in cookie
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    page = s.get(console.url + "/", allow_redirects=False)
    assert page.status_code == 200
    assert "<h1>Overview</h1>" in page.text and "Ola Owner" in page.text
    for target in ("feide", "itslearning"):
        assert f'<th scope="row">{target}</th>' in page.text
    assert "Held runs waiting for approval" in page.text and "Next scheduled run" in page.text
    part = s.get(console.url + "/overview/part", headers={"HX-Request": "true"})
    assert part.status_code == 200 and "<html" not in part.text and "Targets" in part.text


def test_headers_csp_no_store_and_static_htmx(console: Console) -> None:
    s, _ = console.login(OWNER)
    page = s.get(console.url + "/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    js = s.get(console.url + "/static/htmx.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "htmx" in js.text


def test_school_admin_goes_to_people_and_cannot_reach_the_overview(console: Console) -> None:
    s, back = console.login(SCHOOL)
    assert back.status_code == 200
    home = s.get(console.url + "/", allow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/people"
    part = s.get(console.url + "/overview/part")
    assert part.status_code == 403 and "Not for your role" in part.text
    assert "Targets" not in part.text and "SK001" in part.text


def test_unknown_user_is_refused_without_a_session(console: Console) -> None:
    s, back = console.login(STRANGER)
    assert back.status_code == 403 and "no role in BAS" in back.text
    assert "__Host-bas_session" not in back.headers.get("set-cookie", "")
    assert s.get(console.url + "/", allow_redirects=False).status_code == 303


def test_not_logged_in_goes_to_login(console: Console) -> None:
    r = console.client().get(console.url + "/", allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_authorization_request_uses_pkce_s256_state_and_nonce(console: Console) -> None:
    s = console.client()
    auth_url, _ = console.authorize(s, OWNER)
    q = parse_qs(urlsplit(auth_url).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) >= 43
    assert len(q["state"][0]) >= 32 and len(q["nonce"][0]) >= 32


def test_forged_state_is_refused(console: Console) -> None:
    s = console.client()
    _, r = console.authorize(s, OWNER)
    parts = urlsplit(r.headers["location"])
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q["state"] = "forged" + q["state"]
    back = s.get(urlunsplit(parts._replace(query=urlencode(q))), allow_redirects=False)
    assert back.status_code == 400 and "state mismatch" in back.text
    assert "__Host-bas_session" not in back.headers.get("set-cookie", "")


def test_callback_from_another_browser_is_refused(console: Console) -> None:
    _, r = console.authorize(console.client(), OWNER)
    back = console.client().get(r.headers["location"], allow_redirects=False)  # no login cookie
    assert back.status_code == 400 and "not started here" in back.text


def test_missing_or_mismatched_pkce_is_refused(console: Console) -> None:
    s = console.client()
    auth_url, _ = console.authorize(s, OWNER)
    parts = urlsplit(auth_url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items() if not k.startswith("code_challenge")}
    r = s.get(
        urlunsplit(parts._replace(query=urlencode(q))),
        allow_redirects=False,
        verify=str(console.fake.ca_file),
    )
    back = s.get(r.headers["location"], allow_redirects=False)
    assert back.status_code == 400 and "invalid_request" in back.text
    # An attacker's code (from their own login) injected into a victim's login: the verifier differs.
    victim = console.client()
    _, vr = console.authorize(victim, OWNER)
    attacker = console.client()
    _, ar = console.authorize(attacker, OWNER)
    v_state = parse_qs(urlsplit(vr.headers["location"]).query)["state"][0]
    a_code = parse_qs(urlsplit(ar.headers["location"]).query)["code"][0]
    back = victim.get(
        console.url + "/auth/callback?" + urlencode({"code": a_code, "state": v_state}), allow_redirects=False
    )
    assert back.status_code == 400 and "refused the code" in back.text


def test_post_without_csrf_is_refused(console: Console) -> None:
    s, _ = console.login(OWNER)
    assert s.post(console.url + "/logout", allow_redirects=False).status_code == 403
    assert (
        s.post(console.url + "/logout", data={"csrf_token": "wrong"}, allow_redirects=False).status_code
        == 403
    )
    assert s.get(console.url + "/", allow_redirects=False).status_code == 200  # still logged in


def test_logout_ends_the_session_here_and_at_the_provider(console: Console) -> None:
    s, _ = console.login(OWNER)
    page = s.get(console.url + "/")
    old_cookie = s.cookies.get("__Host-bas_session")
    ended = len(console.fake.ended_sessions)
    r = s.post(console.url + "/logout", data={"csrf_token": _csrf(page.text)}, allow_redirects=False)
    assert r.status_code == 303
    end = urlsplit(r.headers["location"])
    assert f"{end.scheme}://{end.netloc}" == console.fake.url and end.path == "/logout"
    assert "id_token_hint" in parse_qs(end.query)
    r2 = s.get(r.headers["location"], allow_redirects=False, verify=str(console.fake.ca_file))
    assert r2.status_code in (302, 303) and r2.headers["location"].startswith(console.url + "/logged-out")
    assert len(console.fake.ended_sessions) == ended + 1
    assert s.get(r2.headers["location"]).status_code == 200
    replay = console.client()
    replay.cookies.set("__Host-bas_session", old_cookie, domain="127.0.0.1", path="/")
    assert replay.get(console.url + "/", allow_redirects=False).status_code == 303


def _app():  # type: ignore[no-untyped-def]
    from provisioner import config as config_mod
    from provisioner.web.app import create_app
    from provisioner.web.oidc import Provider

    cfg = config_mod.Config.model_construct(web=config_mod.WebConfig())
    return create_app(cfg, None, Provider(cfg.web.oidc, "", "https://127.0.0.1/auth/callback", None))  # type: ignore[arg-type]


def test_every_route_declares_who_may_reach_it() -> None:
    from starlette.routing import Mount, Route

    from provisioner.web.access import PUBLIC, ROLES

    public = set()
    for route in _app().routes:
        if isinstance(route, Mount):
            assert route.path == "/static", f"{route.path}: only /static may be mounted"
            continue
        assert isinstance(route, Route), route
        roles = getattr(route.endpoint, "__bas_access__", None)
        assert roles, f"{route.path}: declares no access(...)"
        assert set(roles) <= {PUBLIC, *ROLES}
        if PUBLIC in roles:
            public.add(route.path)
    assert public == {"/login", "/auth/callback", "/logged-out"}


def test_web_config_errors_name_the_key() -> None:
    from provisioner import config as config_mod

    base = (Path(__file__).resolve().parents[1] / "config" / "bas.example.toml").read_text(encoding="utf-8")
    cfg = config_mod.parse(base)
    assert cfg.web.oidc.user_claim and cfg.web.roles.owner_admins
    for bad, key in (
        ('[web]\npublic_url = "http://bas.example.org"', "web.public_url"),
        ('[web]\ntls_cert_file = "c.pem"', "web: tls_cert_file and tls_key_file"),
        ('[web]\nlisten = "8080"', "web.listen"),
        ('[web.oidc]\nissuer = "http://idp.example.org"', "web.oidc.issuer"),
        ('[web.oidc]\nscopes = ["email"]', "web.oidc.scopes"),
        ('[web.roles]\nschool_admins = { "x" = [] }', "web.roles.school_admins"),
        ('[web.roles]\nteachers = { values = ["faculty"] }', "web.roles.teachers.claim"),
    ):
        text = base.split("\n[web]")[0] + "\n" + bad + "\n"
        with pytest.raises(config_mod.ConfigError) as err:
            config_mod.parse(text)
        assert key in str(err.value), (bad, str(err.value))
    empty = config_mod.WebConfig()
    assert empty.missing()[0] == "web.oidc.issuer: not set"


def test_teacher_rule_matches_a_claim_value_or_list() -> None:
    from provisioner.web.access import TEACHER, user_for
    from provisioner.web_config import RolesConfig

    roles = RolesConfig.model_validate({"teachers": {"claim": "eduPersonAffiliation", "values": ["faculty"]}})
    for value in ("faculty", ["member", "faculty"]):
        user = user_for({"sub": "t1", "eduPersonAffiliation": value}, "sub", roles)
        assert user is not None and user.role == TEACHER
    assert user_for({"sub": "p1", "eduPersonAffiliation": ["student"]}, "sub", roles) is None
    assert user_for({"email": "x@y"}, "sub", roles) is None


def test_id_token_verification_refuses_forged_tokens(tmp_path: Path) -> None:
    """The provider client itself: signature against the JWKS, iss, aud, nonce, expiry; a rolled key."""
    from provisioner.web.oidc import LoginError, Provider
    from provisioner.web_config import OidcConfig

    with FakeOidc(tmp_path) as fake:
        fake.add_user("u", "pw", name="U", email="u@example.org", sub="sub-u")
        cfg = OidcConfig(issuer=fake.issuer, client_id="bas-web", client_secret_file="x")
        p = Provider(cfg, "secret", "https://127.0.0.1/auth/callback", str(fake.ca_file))
        good = fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=False)
        assert p._verify(good, "n1", None)["sub"] == "sub-u"
        fake.rotate_key()  # a new key the client has not fetched yet: it fetches the JWKS again
        assert p._verify(fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=False), "n1", None)
        for token, nonce in (
            (fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=True), "n1"),
            (fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=False), "other"),
            (fake.forge_id_token("another-client", "u", nonce="n1", wrong_key=False), "n1"),
            (fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=False, iss="https://evil"), "n1"),
            (
                fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=False, exp=int(time.time()) - 3600),
                "n1",
            ),
            (fake.forge_id_token("bas-web", "u", nonce=None, wrong_key=False), "n1"),
        ):
            with pytest.raises(LoginError):
                p._verify(token, nonce, None)
        token = fake.forge_id_token("bas-web", "u", nonce="n1", wrong_key=False, at_hash="wrong")
        with pytest.raises(LoginError, match="at_hash"):
            p._verify(token, "n1", "an-access-token")


def test_sessions_expire_when_idle_or_old() -> None:
    from provisioner.web.sessions import CookieSigner, Expiring

    store: Expiring[str] = Expiring(lifetime=100, idle=10)
    key = store.add("x")
    assert store.get(key) == "x"
    value, created, used = store._items[key]
    store._items[key] = (value, created, used - 11)
    assert store.get(key) is None
    key = store.add("y")
    value, created, used = store._items[key]
    store._items[key] = (value, created - 101, used)
    assert store.get(key) is None
    signer = CookieSigner()
    assert signer.loads(signer.dumps("abc")) == "abc"
    assert (
        signer.loads(signer.dumps("abc") + "x") is None and CookieSigner().loads(signer.dumps("abc")) is None
    )


def _code_flow(fake: FakeOidc, provider: object, user: str) -> dict:
    """One login through the provider client: start, the provider's redirect, finish."""
    import requests

    pending, url = provider.start(time.time())  # type: ignore[attr-defined]
    fake.preselect(user)
    s = requests.Session()
    s.trust_env = False
    r = s.get(url, allow_redirects=False, verify=str(fake.ca_file))
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    claims, _ = provider.finish(pending, code)  # type: ignore[attr-defined]
    return claims


def test_claims_only_userinfo_gives_reach_the_roles(tmp_path: Path) -> None:
    """Feide's ID token is minimal: the user id and affiliation the roles need come from userinfo."""
    from provisioner.web.access import TEACHER, user_for
    from provisioner.web.oidc import LoginError, Provider
    from provisioner.web_config import OidcConfig, RolesConfig

    with FakeOidc(tmp_path) as fake:
        fake.add_user(
            "t",
            "pw",
            name="T",
            email="t@example.org",
            sub="opaque-sub",
            eduPersonPrincipalName="olan@demo.kommune.no",
            eduPersonAffiliation=["faculty", "member"],
            userinfo_only=["eduPersonPrincipalName", "eduPersonAffiliation"],
        )
        client = fake.add_client("bas-web", ["https://127.0.0.1/auth/callback"])
        roles = RolesConfig.model_validate(
            {"teachers": {"claim": "eduPersonAffiliation", "values": ["faculty"]}}
        )

        def login(userinfo: bool) -> dict:
            cfg = OidcConfig(
                issuer=fake.issuer,
                client_id="bas-web",
                client_secret_file="x",
                user_claim="eduPersonPrincipalName",
                userinfo=userinfo,
            )
            p = Provider(cfg, client.client_secret, "https://127.0.0.1/auth/callback", str(fake.ca_file))
            return _code_flow(fake, p, "t")

        without = login(userinfo=False)
        assert "eduPersonAffiliation" not in without  # the ID token alone
        assert user_for(without, "eduPersonPrincipalName", roles) is None
        claims = login(userinfo=True)
        assert claims["sub"] == "opaque-sub" and claims["iss"] == fake.issuer  # the ID token's own
        user = user_for(claims, "eduPersonPrincipalName", roles)
        assert user is not None and (user.user_id, user.role) == ("olan@demo.kommune.no", TEACHER)
        fake.userinfo_sub = "someone-else"
        with pytest.raises(LoginError, match="another user"):
            login(userinfo=True)
