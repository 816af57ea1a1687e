"""Microsoft 365 end to end through the `bas` command line against the local Graph; drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.m365test import M365Env
from tests.sisbuilder import small_sis
from tests.test_cli import bas


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[M365Env]:
    e = M365Env(tmp_path, small_sis())
    try:
        yield e
    finally:
        e.close()


def test_cli_sync_then_reconcile_and_repair(env: M365Env) -> None:
    env.sis.write(env.src)
    p = bas("sync", "--as-of", "2025-10-01", config=env.config_path)
    assert "m365" in p.stdout
    assert len([u for u in env.graph.directory.users.values() if u.get("employeeId")]) == 9
    assert env.changelog("ok") and not env.changelog("rejected")
    # Nothing to do the next time, and not a single write.
    env.graph.reset_counts()
    bas("sync", "--as-of", "2025-10-02", config=env.config_path)
    assert env.graph.writes == 0
    # The first reconcile reads everything: no drift; the deltaLink is kept.
    p = bas("m365", "reconcile", config=env.config_path)
    assert "0 difference(s)" in p.stdout
    # Edited and blocked by hand, one deleted by hand, one unmanaged account with an employeeId.
    d = env.graph.directory
    s1, s2, s3 = (env.objects()[k]["anchor"] for k in ("S1", "S2", "S3"))
    env.graph.reset_counts()
    d.handle("PATCH", f"/users/{s1}", {}, {"displayName": "Hacked"})
    d.handle("PATCH", f"/users/{s2}", {}, {"accountEnabled": False})
    d.handle("DELETE", f"/users/{s3}", {}, None)
    d.add_user(userPrincipalName="x@skole.eksempel.no", displayName="X", mailNickname="x", employeeId="Z9")
    p = bas("m365", "reconcile", "--json", config=env.config_path, check=1)
    drift = {(x["kind"], x["key"]) for x in json.loads(p.stdout)}
    assert drift == {("changed", "S1"), ("state", "S2"), ("missing", "S3"), ("unmanaged", None)}
    # Incremental: only the users changed since the stored deltaLink were read.
    assert env.graph.counts["http"] <= 4
    p = bas("m365", "reconcile", "--full", "--repair", config=env.config_path, check=1)
    assert "(repaired)" in p.stdout
    assert d.users[s1]["displayName"] != "Hacked" and d.users[s2]["accountEnabled"] is True
    assert s3 in d.users
    # After the repair only the unmanaged account is left.
    p = bas("m365", "reconcile", "--full", "--json", config=env.config_path, check=1)
    assert [x["kind"] for x in json.loads(p.stdout)] == ["unmanaged"]


def test_reconcile_starts_over_when_the_delta_token_expired(env: M365Env) -> None:
    env.sis.write(env.src)
    bas("sync", "--as-of", "2025-10-01", config=env.config_path)
    bas("m365", "reconcile", config=env.config_path)
    env.graph.directory.expire_delta_tokens()
    s1 = env.objects()["S1"]["anchor"]
    env.graph.directory.handle("PATCH", f"/users/{s1}", {}, {"surname": "Endret"})
    p = bas("m365", "reconcile", "--json", config=env.config_path, check=1)
    assert [(x["kind"], x["key"]) for x in json.loads(p.stdout)] == [("changed", "S1")]


def test_wrong_client_secret_fails_the_target_clearly(env: M365Env) -> None:
    (env.tmp / "graph.secret").write_text("not-the-secret\n", encoding="utf-8")
    env.sis.write(env.src)
    p = bas("sync", "--as-of", "2025-10-01", config=env.config_path, check=None)
    assert p.returncode != 0
    assert "invalid_client" in p.stdout + p.stderr
    assert not [u for u in env.graph.directory.users.values() if u.get("employeeId")]
    assert env.graph.client_secret not in p.stdout + p.stderr
