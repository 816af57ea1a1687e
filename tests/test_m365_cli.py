"""Microsoft 365 end to end through the `bas` command line against the local Graph; drift."""

from __future__ import annotations

import json

import sqlalchemy as sa

from tests.m365test import M365Env
from tests.test_cli import bas


def test_cli_sync_then_reconcile_and_repair(m365_env: M365Env) -> None:
    m365_env.sis.write(m365_env.src)
    p = bas("sync", "--as-of", "2025-10-01", config=m365_env.config_path)
    assert "m365" in p.stdout
    assert len([u for u in m365_env.graph.directory.users.values() if u.get("employeeId")]) == 9
    assert m365_env.changelog("ok") and not m365_env.changelog("rejected")
    # Nothing to do the next time, and not a single write.
    m365_env.graph.reset_counts()
    bas("sync", "--as-of", "2025-10-02", config=m365_env.config_path)
    assert m365_env.graph.writes == 0
    # The first reconcile reads everything: no drift; the deltaLink is kept.
    p = bas("m365", "reconcile", config=m365_env.config_path)
    assert "0 difference(s)" in p.stdout
    # Edited and blocked by hand, one deleted by hand, one unmanaged account with an employeeId.
    d = m365_env.graph.directory
    s1, s2, s3 = (m365_env.objects()[k]["anchor"] for k in ("S1", "S2", "S3"))
    m365_env.graph.reset_counts()
    d.handle("PATCH", f"/users/{s1}", {}, {"displayName": "Hacked"})
    d.handle("PATCH", f"/users/{s2}", {}, {"accountEnabled": False})
    d.handle("DELETE", f"/users/{s3}", {}, None)
    d.add_user(userPrincipalName="x@skole.eksempel.no", displayName="X", mailNickname="x", employeeId="Z9")
    p = bas("m365", "reconcile", "--json", config=m365_env.config_path, check=1)
    drift = {(x["kind"], x["key"]) for x in json.loads(p.stdout)}
    assert drift == {("changed", "S1"), ("state", "S2"), ("missing", "S3"), ("unmanaged", None)}
    # Incremental: only the users changed since the stored deltaLink were read.
    assert m365_env.graph.counts["http"] <= 4
    p = bas("m365", "reconcile", "--full", "--repair", config=m365_env.config_path, check=1)
    assert "(repaired)" in p.stdout
    assert d.users[s1]["displayName"] != "Hacked" and d.users[s2]["accountEnabled"] is True
    assert s3 in d.users
    # Repaired through the executor: a changelog row per planned change, with its drift reason.
    repairs = {
        (r["op"], r["key"], r["reason"]) for r in m365_env.changelog("ok") if r["reason"].startswith("drift")
    }
    assert repairs == {
        ("update", "S1", "drift: changed outside BAS (displayName)"),
        ("enable", "S2", "drift: disabled outside BAS"),
        ("restore", "S3", "drift: deleted outside BAS; restored"),
        ("enable", "S3", "drift: deleted outside BAS; restored"),
    }
    # After the repair only the unmanaged account is left.
    p = bas("m365", "reconcile", "--full", "--json", config=m365_env.config_path, check=1)
    assert [x["kind"] for x in json.loads(p.stdout)] == ["unmanaged"]
    # Each reconcile was a run under the run lock, recorded like the others.
    with m365_env.store.engine.connect() as c:
        rows = c.execute(sa.text("SELECT status FROM runs WHERE kind = 'reconcile' ORDER BY started_at"))
        assert [r[0] for r in rows] == ["done", "drift", "drift", "drift"]


def test_reconcile_starts_over_when_the_delta_token_expired(m365_env: M365Env) -> None:
    m365_env.sis.write(m365_env.src)
    bas("sync", "--as-of", "2025-10-01", config=m365_env.config_path)
    bas("m365", "reconcile", config=m365_env.config_path)
    m365_env.graph.directory.expire_delta_tokens()
    s1 = m365_env.objects()["S1"]["anchor"]
    m365_env.graph.directory.handle("PATCH", f"/users/{s1}", {}, {"surname": "Endret"})
    p = bas("m365", "reconcile", "--json", config=m365_env.config_path, check=1)
    assert [(x["kind"], x["key"]) for x in json.loads(p.stdout)] == [("changed", "S1")]


def test_wrong_client_secret_fails_the_target_clearly(m365_env: M365Env) -> None:
    (m365_env.tmp / "graph.secret").write_text("not-the-secret\n", encoding="utf-8")
    m365_env.sis.write(m365_env.src)
    p = bas("sync", "--as-of", "2025-10-01", config=m365_env.config_path, check=None)
    assert p.returncode != 0
    assert "invalid_client" in p.stdout + p.stderr
    assert not [u for u in m365_env.graph.directory.users.values() if u.get("employeeId")]
    assert m365_env.graph.client_secret not in p.stdout + p.stderr
