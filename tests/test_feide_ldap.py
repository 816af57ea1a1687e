"""The live Feide connector against a real OpenLDAP server (tests/slapd_server.py).

Each test gets its own base DN below the session server's suffix; the server's monitor
backend counts write operations, so "no writes" is checked on the server's side.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE

from connectors.base import Connector
from connectors.errors import FatalError, RejectedError, TransientError
from connectors.feide.ldap import FeideLdapConnector
from connectors.ldap import ldif
from mappings.feide import NIN_ATTRS
from provisioner.apply.executor import apply_plan
from provisioner.apply.outcomes import RetryPolicy
from provisioner.core.dn import escape as escape_dn_value
from provisioner.core.dn import normalize as norm_dn
from provisioner.core.nin_seal import NinSeal, sealed_attrs
from provisioner.core.plan import Change, Op, Plan, TargetPlan
from provisioner.run import runner
from provisioner.run.runner import EXIT_OK, EXIT_TARGET_FAILED, RunOutcome
from provisioner.state.nins import nin_seal
from provisioner.state.store import StateStore
from tests.sisbuilder import Sis, make_config, small_sis
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX, SlapdServer

DAY1, DAY2, DAY3 = "2025-10-01", "2025-10-02", "2025-10-03"
REALM = "eksempel.kommune.no"
ODD = ' Ola, "Jr" <x>; =*()# \\ + 🙂 '  # every DN special, leading/trailing spaces, an emoji


def new_base(tag: str = "t") -> str:
    """A base DN of its own for one test, below the server's suffix."""
    return f"dc={tag}{uuid.uuid4().hex[:10]},{SUFFIX}"


class LiveEnv:
    """A tiny SIS, a config whose feide target writes to the test slapd, and a state store."""

    def __init__(self, tmp: Path, server: SlapdServer, sis: Sis, base_dn: str | None = None, **feide: Any):
        self.tmp, self.server, self.sis = tmp, server, sis
        tmp.mkdir(parents=True, exist_ok=True)
        self.base_dn = base_dn or new_base()
        self.src = f"sqlite:///{tmp / 'sis.db'}"
        self.store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        secret = tmp / "feide-bind.secret"
        secret.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
        secret.chmod(0o600)
        self.feide: dict[str, Any] = {
            "mode": "apply",
            "base_dn": self.base_dn,
            **server.client,
            "bind_dn": ADMIN_DN,
            "password_file": str(secret),
            **feide,
        }
        self.configure()

    def configure(self, **feide: Any) -> None:
        self.feide.update(feide)
        self.cfg = make_config(
            self.tmp, self.src, self.store.url, targets=("feide",), target_settings={"feide": self.feide}
        )

    def sync(self, as_of: str = DAY1) -> RunOutcome:
        self.sis.write(self.src)
        return runner.sync(self.cfg, self.store, as_of=as_of)

    def stored(self) -> dict[str, dict[str, Any]]:
        return {o["key"]: o for o in self.store.objects.iterate("feide")}

    def entries(self) -> dict[tuple, dict[str, list[str]]]:
        """Every entry under the base DN (see read_tree)."""
        return read_tree(self.server, self.base_dn)


def read_tree(server: SlapdServer, base: str) -> dict[tuple, dict[str, list[str]]]:
    """Every entry under ``base``: normalised DN -> attributes (entryUUID too; the DN as ``_dn``)."""
    conn = server.connect()
    conn.search(base, "(objectClass=*)", SUBTREE, attributes=["*", "entryUUID"])
    out = {}
    for r in conn.response:
        if r.get("type") == "searchResEntry":
            attrs = {k: [v.decode("utf-8") for v in vs] for k, vs in r["raw_attributes"].items()}
            attrs["_dn"] = [r["dn"]]
            out[norm_dn(r["dn"])] = attrs
    conn.unbind()
    return out


def read_entry(server: SlapdServer, dn: str) -> dict[str, list[str]] | None:
    conn = server.connect()
    conn.search(dn, "(objectClass=*)", BASE, attributes=["*", "entryUUID", "modifyTimestamp"])
    found = [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
    conn.unbind()
    if not found:
        return None
    return {k: [v.decode("utf-8") for v in vs] for k, vs in found[0]["raw_attributes"].items()}


def ok(out: RunOutcome, code: int = EXIT_OK) -> RunOutcome:
    assert out.exit_code == code, (out.status, out.message, {k: v.to_json() for k, v in out.results.items()})
    return out


def same_entry(stored_attrs: dict[str, Any], server_attrs: dict[str, list[str]], seal: NinSeal) -> None:
    """The server holds exactly the mapping's attributes (as the LDIF export would write them).

    ``seal``: the store's NIN seal; the store holds a NIN sealed, the server whole.
    """
    server_attrs = dict(sealed_attrs(server_attrs, NIN_ATTRS, seal))
    for name, value in stored_attrs.items():
        if name == "dn":
            continue
        want = ldif.values_of(value)
        got = server_attrs.get(name, [])
        if name in ("eduPersonOrgDN", "eduPersonOrgUnitDN", "eduPersonPrimaryOrgUnitDN"):
            assert sorted(map(norm_dn, got)) == sorted(map(norm_dn, want)), name
        else:
            assert sorted(got) == sorted(want), name


# -- a full first sync, then nothing -------------------------------------------------------


def test_first_sync_writes_the_catalog_and_a_second_run_sends_nothing(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    out = ok(env.sync())
    assert out.results["feide"].ok == 1 + 2 + 9  # org, two schools, six students + three employees
    stored = env.stored()
    tree = env.entries()
    for obj in stored.values():
        dn = obj["attrs"]["dn"]
        entry = tree[norm_dn(dn)]
        same_entry(obj["attrs"], entry, nin_seal(env.store))
        assert obj["anchor"] == entry["entryUUID"][0]  # the anchor is the entryUUID
    # The containers are there, and nothing else.
    assert norm_dn(f"ou=people,{env.base_dn}") in tree and norm_dn(f"ou=units,{env.base_dn}") in tree
    assert len(tree) == len(stored) + 2
    s1 = stored["S1"]["attrs"]
    assert s1["eduPersonPrincipalName"] == f"{s1['uid']}@{REALM}"
    assert any(
        v.startswith("urn:mace:feide.no:go:groupid:u:NO974000001:nord-mat:")
        for v in s1["eduPersonEntitlement"]
    )
    assert "userPassword" not in tree[norm_dn(s1["dn"])]  # not configured: not written

    before = slapd.write_ops()
    again = ok(env.sync(DAY2))
    assert again.plan is not None and not again.plan.target("feide").changes
    assert slapd.write_ops() == before  # the server saw no add, modify, modrdn or delete


# -- renames, updates, deletes -------------------------------------------------------------


def test_rename_is_a_modify_dn_and_the_entry_uuid_anchor_survives(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    old = env.stored()["NORD"]
    old_dn, anchor = old["attrs"]["dn"], old["anchor"]
    # The school gets a new org number: its DN (norEduOrgUnitUniqueIdentifier=NO...) changes.
    env.sis.schools = [
        s._replace(org_number="974000009") if s.school_id == "NORD" else s for s in env.sis.schools
    ]
    out = ok(env.sync(DAY2))
    ops = {(c.op.value, c.key) for c in out.plan.target("feide").changes}
    assert ("move", "NORD") in ops
    new = env.stored()["NORD"]
    assert new["anchor"] == anchor
    assert read_entry(slapd, old_dn) is None
    entry = read_entry(slapd, new["attrs"]["dn"])
    assert entry["entryUUID"] == [anchor] and entry["norEduOrgUnitUniqueIdentifier"] == ["NO974000009"]
    s1 = read_entry(slapd, env.stored()["S1"]["attrs"]["dn"])
    assert [norm_dn(v) for v in s1["eduPersonOrgUnitDN"]] == [norm_dn(new["attrs"]["dn"])]
    # The schools move to a container that does not exist yet: it is made, then the rename.
    env.configure(units_ou="ou=skoler")
    ok(env.sync(DAY3))
    moved = env.stored()["NORD"]
    assert moved["anchor"] == anchor and moved["attrs"]["dn"].endswith(f"ou=skoler,{env.base_dn}")
    assert read_entry(slapd, moved["attrs"]["dn"])["entryUUID"] == [anchor]
    assert ok(env.sync(DAY3)).plan.target("feide").changes == ()


def test_a_changed_attribute_is_the_only_thing_modified(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    dn = env.stored()["S2"]["attrs"]["dn"]
    # Someone sets mail by hand: a run that rewrote the whole entry would put it back.
    conn = slapd.connect()
    assert conn.modify(dn, {"mail": [(MODIFY_REPLACE, ["hand@set.example"])]})
    conn.unbind()
    env.sis.update_person("S2", family_name="Hansen-Berg")
    before = slapd.write_ops()
    out = ok(env.sync(DAY2))
    changes = out.plan.target("feide").changes
    assert [(c.op.value, c.key) for c in changes] == [("update", "S2")]
    assert set(changes[0].attrs) == {"cn", "displayName", "sn", "norEduPersonLegalName"}
    assert slapd.write_ops() == before + 1  # one modify
    entry = read_entry(slapd, dn)
    assert entry["sn"] == ["Hansen-Berg"] and entry["cn"] == ["Kari Hansen-Berg"]
    assert entry["mail"] == ["hand@set.example"]  # untouched
    assert entry["givenName"] == ["Kari"]


def test_removing_an_attribute_value_and_the_nin(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    dn = env.stored()["S3"]["attrs"]["dn"]
    assert read_entry(slapd, dn)["eduPersonEntitlement"]
    env.sis.memberships = [m for m in env.sis.memberships if m.person_id != "S3"]
    env.sis.update_person("S3", nin=None)
    ok(env.sync(DAY2))
    entry = read_entry(slapd, dn)
    # Out of every group, S3 keeps only the Grep code of their grade; without a NIN the
    # SIS id stands in for it as norEduPersonLIN.
    grade = "urn:mace:feide.no:go:grep:http://psi.udir.no/laereplan/aarstrinn/aarstrinn6"
    assert entry["eduPersonEntitlement"] == [grade] and "norEduPersonNIN" not in entry
    assert entry["norEduPersonLIN"] == [f"{REALM.lower()}:sis:S3"]
    assert ok(env.sync(DAY2)).plan.target("feide").changes == ()


def test_delete_and_a_repeated_delete(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    gone = env.stored()["S6"]
    # S6 leaves (removing the record would drop 1 of 4 guardianship rows: refused by the gate)
    env.sis.end_enrollments("S6", DAY1)
    out = ok(env.sync(DAY2))
    assert ("delete", "S6") in {(c.op.value, c.key) for c in out.plan.target("feide").changes}
    assert read_entry(slapd, gone["attrs"]["dn"]) is None
    assert "S6" not in env.stored()
    # The same delete again (a plan applied twice, a lost reply): success, nothing sent.
    conn = connector(env)
    conn.begin("again", lambda kind, key: None)
    before = slapd.write_ops()
    for anchor in (gone["anchor"], gone["attrs"]["dn"]):
        applied = conn.apply(
            Change(target="feide", op=Op.DELETE, kind="person", key="S6", reason="test", anchor=anchor)
        )
        assert "nothing to delete" in applied.note
    conn.close()
    assert slapd.write_ops() == before


def connector(env: LiveEnv, **link: Any) -> FeideLdapConnector:
    """A live connector for the env's config (as build_connector makes it)."""
    from provisioner.run.targets import build_connector

    conn = build_connector(env.cfg, "feide")
    assert isinstance(conn, FeideLdapConnector)
    for k, v in link.items():
        setattr(conn.link, k, v)
    return conn


def test_a_create_that_finds_its_own_entry_compares_and_updates(tmp_path: Path, slapd) -> None:
    first = LiveEnv(tmp_path / "a", slapd, small_sis())
    ok(first.sync())
    stored = first.stored()
    s1, s4 = stored["S1"]["attrs"]["dn"], stored["S4"]["attrs"]["dn"]
    conn = slapd.connect()
    assert conn.modify(s1, {"sn": [(MODIFY_REPLACE, ["Feil"])]})
    assert conn.modify(s4, {"mail": [(MODIFY_DELETE, [])]})
    conn.unbind()
    # A second installation (a lost state store) creates everything again into the same catalog.
    second = LiveEnv(tmp_path / "b", slapd, small_sis(), base_dn=first.base_dn)
    second.sis = first.sis
    before = slapd.write_ops(("Modify", "Modrdn", "Delete"))
    out = ok(second.sync())
    assert out.results["feide"].ok == len(stored)
    # Two modifies, the entries that differ; every add found its entry in the way.
    assert slapd.write_ops(("Modify", "Modrdn", "Delete")) == before + 2
    again = second.stored()
    for key, obj in stored.items():
        assert again[key]["anchor"] == obj["anchor"]  # found its own entries by their entryUUID
    assert read_entry(slapd, s1)["sn"] == [stored["S1"]["attrs"]["sn"]]
    assert read_entry(slapd, s4)["mail"] == [stored["S4"]["attrs"]["mail"]]
    with second.store.engine.connect() as c:
        notes = [r[0] for r in c.exec_driver_sql("SELECT error FROM changelog WHERE target = 'feide'")]
    assert sum(1 for n in notes if n and n.startswith("already existed")) == len(stored)


# -- odd values ------------------------------------------------------------------------------


def test_special_characters_and_emoji_round_trip(tmp_path: Path, slapd) -> None:
    sis = small_sis()
    sis.student("ODD", "NORD", ODD, '\\Nord+mann # ;<>"=*() 🙂')
    sis.group(
        "NORD-ODD",
        "NORD",
        "teaching",
        'Grp, "x" + <y>; =*()# \\ 🙂',
        subject="NOR1234",
        members=[("ODD", "student"), ("T1", "teacher")],
    )
    base = "o=" + escape_dn_value(' Sør-Fron, "kommune" + <x>; =*()# \\ 🙂 ') + "," + SUFFIX
    env = LiveEnv(tmp_path, slapd, sis, base_dn=base)
    ok(env.sync())
    stored = env.stored()
    tree = env.entries()
    assert len(tree) == len(stored) + 2
    for obj in stored.values():
        same_entry(obj["attrs"], tree[norm_dn(obj["attrs"]["dn"])], nin_seal(env.store))
    odd = stored["ODD"]["attrs"]
    assert odd["givenName"] != "" and "🙂" in odd["sn"]
    assert "🙂" in tree[norm_dn(stored["org"]["attrs"]["dn"])]["o"][-1]
    # Everything the server holds equals what was planned: the next run has nothing to do.
    assert ok(env.sync(DAY2)).plan.target("feide").changes == ()
    # A rename under the odd base DN works too.
    env.configure(people_ou="ou=personer")
    ok(env.sync(DAY3))
    moved = env.stored()["ODD"]
    assert moved["anchor"] == stored["ODD"]["anchor"]
    assert read_entry(slapd, moved["attrs"]["dn"])["sn"] == [odd["sn"]]


# -- errors ----------------------------------------------------------------------------------


def person_change(env: LiveEnv, key: str, uid: str, **attrs: Any) -> Change:
    """A create of a person entry like the mapping makes it, with ``attrs`` on top."""
    org = env.base_dn
    unit = f"norEduOrgUnitUniqueIdentifier=NO974000001,ou=units,{org}"
    base = {
        "objectClass": [
            "top",
            "person",
            "organizationalPerson",
            "inetOrgPerson",
            "eduPerson",
            "norEduPerson",
        ],
        "uid": uid,
        "cn": "Test Person",
        "displayName": "Test Person",
        "givenName": "Test",
        "sn": "Person",
        "norEduPersonLegalName": "Test Person",
        "eduPersonPrincipalName": f"{uid}@{REALM}",
        "eduPersonAffiliation": ["member", "student"],
        "eduPersonOrgDN": org,
        "eduPersonOrgUnitDN": [unit],
        "eduPersonPrimaryOrgUnitDN": unit,
        "eduPersonEntitlement": [],
        **attrs,
    }
    place = {"dn": f"uid={uid},ou=people,{org}"}
    return Change(
        target="feide",
        op=Op.CREATE,
        kind="person",
        key=key,
        reason="test",
        username=uid,
        attrs=base,
        place=place,
    )


def test_a_schema_violation_rejects_that_entry_and_the_rest_goes_on(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())  # org, schools, containers
    changes = (
        person_change(env, "X1", "xgood1"),
        person_change(env, "X2", "xbadnin", norEduPersonNIN="1234567890A"),  # NumericString
        person_change(env, "X3", "xtwoprim", eduPersonPrimaryAffiliation=["student", "member"]),
        person_change(env, "X4", "xunknown", shoeSize="44"),  # no such attribute type
        person_change(env, "X5", "xgood2"),
    )
    plan = Plan("reject-run", "2025-10-02T00:00:00Z", DAY2, {}, (TargetPlan("feide", changes),))
    env.store.runs.start("reject-run", "sync", DAY2)
    results = apply_plan(plan, env.store, {"feide": connector(env)}, soft_delete={})
    res = results["feide"]
    assert (res.status, res.ok, res.rejected, res.failed) == ("applied", 2, 3, 0)
    for uid in ("xbadnin", "xtwoprim", "xunknown"):
        assert any(f"uid={uid}," in e for e in res.errors), (uid, res.errors)
    for uid, there in (("xgood1", True), ("xbadnin", False), ("xtwoprim", False), ("xgood2", True)):
        assert (read_entry(slapd, f"uid={uid},ou=people,{env.base_dn}") is not None) is there
    stored = env.stored()
    assert {"X1", "X5"} <= set(stored) and not {"X2", "X3", "X4"} & set(stored)


def test_errors_are_typed(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    (tmp_path / "wrong.secret").write_text("not-the-password\n", encoding="utf-8")
    env.configure(password_file=str(tmp_path / "wrong.secret"))
    with pytest.raises(FatalError, match="invalidCredentials"):
        connector(env).begin("r", lambda k, key: None)
    env.configure(password_file=str(tmp_path / "feide-bind.secret"), base_dn=f"dc=x,dc=nowhere,{SUFFIX}")
    with pytest.raises(FatalError, match="no such base"):
        connector(env).begin("r", lambda k, key: None)
    env.configure(base_dn="dc=x,dc=elsewhere")
    with pytest.raises(FatalError, match="no such base"):
        connector(env).begin("r", lambda k, key: None)
    env.configure(url="ldap://127.0.0.1:1")  # nothing listens there
    with pytest.raises(TransientError, match="cannot reach"):
        connector(env).begin("r", lambda k, key: None)
    # An unsupported operation or kind is refused for that object only.
    env.configure(url=slapd.url, base_dn=new_base())
    conn = connector(env)
    conn.begin("r", lambda k, key: None)
    with pytest.raises(RejectedError, match="not supported"):
        conn.apply(Change(target="feide", op=Op.DISABLE, kind="person", key="P", reason="t", anchor="x"))
    with pytest.raises(RejectedError, match="unknown object kind"):
        conn.apply(
            Change(target="feide", op=Op.CREATE, kind="group", key="G", reason="t", place={"dn": "cn=g"})
        )
    conn.close()


def test_server_down_at_start_fails_the_target_alone_and_nothing_is_lost(
    tmp_path: Path, slapd_factory
) -> None:
    server = slapd_factory()
    env = LiveEnv(tmp_path, server, small_sis(), base_dn=f"dc=down,{SUFFIX}")
    server.stop()
    out = env.sync()
    assert out.exit_code == EXIT_TARGET_FAILED and out.results["feide"].status == "failed"
    assert "could not start" in out.results["feide"].errors[0]
    assert env.stored() == {}
    server.start()
    ok(env.sync(DAY2))
    assert len(env.stored()) == 12 and len(env.entries()) == 14


class StopsServer(Connector):
    """Wraps a connector: stops the server just before the n-th change (a crash mid-run)."""

    def __init__(self, inner: FeideLdapConnector, server: SlapdServer, at: int) -> None:
        self.inner, self.server, self.at, self.n = inner, server, at, 0
        self.target = inner.target
        self.nin_attrs = inner.nin_attrs

    def use_nin_book(self, book: Any) -> None:
        self.inner.use_nin_book(book)

    def begin(self, run_id: str, resolve: Any) -> None:
        self.inner.begin(run_id, resolve)

    def apply(self, change: Change) -> Any:
        self.n += 1
        if self.n == self.at:
            self.server.stop()
        return self.inner.apply(change)

    def finish(self, current: Any) -> None:
        self.inner.finish(current)

    def close(self) -> None:
        self.inner.close()


def test_server_down_mid_run_is_retried_and_nothing_is_lost(tmp_path: Path, slapd_factory) -> None:
    server = slapd_factory()
    env = LiveEnv(tmp_path, server, small_sis(), base_dn=f"dc=mid,{SUFFIX}")
    env.sis.write(env.src)
    plan, _ = runner.make_plan(env.cfg, env.store, lambda: runner.read_source(env.cfg), DAY1, "mid-run")
    env.store.runs.start("mid-run", "sync", DAY1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the executor's backoff: the server comes back meanwhile
        slept.append(seconds)
        if len(slept) == 2:
            server.start()

    conn = StopsServer(connector(env), server, at=5)
    results = apply_plan(plan, env.store, {"feide": conn}, soft_delete={}, sleep=sleep)
    assert results["feide"].ok == 12 and results["feide"].failed == 0, results["feide"].errors
    assert len(slept) == 2  # two transient failures, then the same change went through
    assert len(env.stored()) == 12 and len(read_tree(server, env.base_dn)) == 14


def test_a_server_that_stays_down_stops_the_target(tmp_path: Path, slapd_factory) -> None:
    server = slapd_factory()
    env = LiveEnv(tmp_path, server, small_sis(), base_dn=f"dc=gone,{SUFFIX}")
    env.sis.write(env.src)
    plan, _ = runner.make_plan(env.cfg, env.store, lambda: runner.read_source(env.cfg), DAY1, "gone-run")
    env.store.runs.start("gone-run", "sync", DAY1)
    inner = connector(env, max_reconnects=3)
    results = apply_plan(
        plan,
        env.store,
        {"feide": StopsServer(inner, server, at=4)},
        soft_delete={},
        retry=RetryPolicy(attempts=2, base_delay=0),
        sleep=lambda s: None,
    )
    res = results["feide"]
    assert res.status == "failed" and res.ok == 3
    assert any("unreachable" in e for e in res.errors), res.errors
    assert len(env.stored()) == 3  # what was written is recorded; the rest is planned again next run
    server.start()
    out = ok(env.sync(DAY2))
    assert out.results["feide"].ok == 9 and len(env.stored()) == 12


# -- userPassword --------------------------------------------------------------------------------


def test_user_password_template_is_written_but_never_stored_or_logged(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis(), user_password_template="{SASL}{username}@AD.EKSEMPEL.NO")
    ok(env.sync())
    s1 = env.stored()["S1"]
    entry = read_entry(slapd, s1["attrs"]["dn"])
    assert entry["userPassword"] == [f"{{SASL}}{s1['username']}@AD.EKSEMPEL.NO"]
    assert "userPassword" not in s1["attrs"]
    with env.store.engine.connect() as c:
        text = " ".join(str(r) for r in c.exec_driver_sql("SELECT * FROM changelog"))
    assert "SASL" not in text and "userPassword" not in text


# -- TLS -------------------------------------------------------------------------------------------


def test_start_tls_and_ldaps_with_a_ca_file(tmp_path: Path, slapd_factory) -> None:
    server = slapd_factory(tls=True)
    env = LiveEnv(
        tmp_path, server, small_sis(), base_dn=f"dc=tls,{SUFFIX}", start_tls=True, ca_file=str(server.ca_file)
    )
    ok(env.sync())
    assert len(env.stored()) == 12
    env.configure(url=server.ldaps_url, start_tls=False)
    env.sis.update_person("S1", family_name="Nordmann-Tls")
    ok(env.sync(DAY2))
    assert read_entry(server, env.stored()["S1"]["attrs"]["dn"])["sn"] == ["Nordmann-Tls"]
    # A certificate the CA file does not vouch for is a configuration error, not bad luck.
    for url, start_tls in ((server.url, True), (server.ldaps_url, False)):
        env.configure(url=url, start_tls=start_tls, ca_file="/etc/ssl/certs/ca-certificates.crt")
        with pytest.raises(FatalError, match="TLS"):
            connector(env).begin("r", lambda k, key: None)


def test_sms_mfa_and_org_mail_are_written_and_only_what_bas_wrote_is_removed(tmp_path: Path, slapd) -> None:
    sis = small_sis().update_person("T1", mobile="912 34 567").update_person("S1", mobile="98765432")
    env = LiveEnv(tmp_path, slapd, sis, sms_authn=True, org_mail="post@eksempel.kommune.no")
    ok(env.sync())
    t1, s1, a1 = (env.stored()[k]["attrs"]["dn"] for k in ("T1", "S1", "A1"))
    sms = "urn:mace:feide.no:auth:method:sms +4791234567 label=Mobil"
    assert read_entry(slapd, t1)["norEduPersonAuthnMethod"] == [sms]
    assert "norEduPersonAuthnMethod" not in read_entry(slapd, s1)  # a student: never
    assert read_entry(slapd, env.base_dn)["mail"] == ["post@eksempel.kommune.no"]
    # An authenticator-app method and a school address set outside BAS on entries BAS has
    # no value for: turning the settings off removes BAS's own values, not those.
    ga = "urn:mace:feide.no:auth:method:ga c2VjcmV0 label=App"
    unit = env.stored()["NORD"]["attrs"]["dn"]
    conn = slapd.connect()
    conn.modify(a1, {"norEduPersonAuthnMethod": [(MODIFY_REPLACE, [ga])]})
    conn.modify(unit, {"mail": [(MODIFY_REPLACE, ["nord@eksempel.kommune.no"])]})
    conn.unbind()
    del env.feide["org_mail"]
    env.configure(sms_authn=False)
    ok(env.sync(DAY2))
    assert "norEduPersonAuthnMethod" not in read_entry(slapd, t1)
    assert "mail" not in read_entry(slapd, env.base_dn)
    assert read_entry(slapd, a1)["norEduPersonAuthnMethod"] == [ga]
    assert read_entry(slapd, unit)["mail"] == ["nord@eksempel.kommune.no"]
    assert ok(env.sync(DAY2)).plan.target("feide").changes == ()
