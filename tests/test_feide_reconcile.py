"""Feide reconcile against a real OpenLDAP server: read back, plan, repair (tests/slapd_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from ldap3 import MODIFY_REPLACE

from connectors.errors import FatalError
from provisioner.cli.main import main
from provisioner.run.reconcile import DriftItem, reconcile
from provisioner.service import status
from tests.sisbuilder import small_sis
from tests.test_feide_ldap import LiveEnv, ok


def reconcile_feide(env: LiveEnv, *, repair: bool) -> tuple[str, list[DriftItem]]:
    r = reconcile(env.cfg, env.store, "feide", repair=repair)
    return r.run_id, r.drift()


def _persons(env: LiveEnv) -> list[dict]:
    return sorted((o for o in env.stored().values() if o["kind"] == "person"), key=lambda o: o["key"])


def test_a_clean_sync_reconciles_to_nothing(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis(), user_password_template="{SASL}{username}@AD.TEST")
    ok(env.sync())
    run_id, drift = reconcile_feide(env, repair=False)
    assert drift == []
    assert any(r["run_id"] == run_id for r in env.store.runs.newest(5))


def test_hand_edits_are_reported_and_repaired(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    assert status.collect(env.store, ["feide"]).targets["feide"].drifted is None  # never checked
    reconcile_feide(env, repair=False)
    edited, deleted = _persons(env)[:2]
    conn = slapd.connect()
    assert conn.modify(edited["attrs"]["dn"], {"displayName": [(MODIFY_REPLACE, ["Changed By Hand"])]})
    assert conn.delete(deleted["attrs"]["dn"])
    stray = f"uid=stray,{env.cfg.targets['feide'].people_ou},{env.base_dn}"
    assert conn.add(stray, ["top", "person", "inetOrgPerson"], {"cn": "Stray", "sn": "Stray", "uid": "stray"})
    # A case-only change of a case-insensitive attribute is no drift.
    assert conn.modify(
        edited["attrs"]["dn"], {"sn": [(MODIFY_REPLACE, [str(edited["attrs"]["sn"]).upper()])]}
    )
    conn.unbind()

    assert status.collect(env.store, ["feide"]).targets["feide"].drifted == 0  # the clean sync's check
    run_id, drift = reconcile_feide(env, repair=False)
    th = status.collect(env.store, ["feide"]).targets["feide"]  # what `bas status` and the console show
    assert (th.drifted, th.drift_run) == (3, run_id)
    kinds = sorted((d.kind, d.key) for d in drift)
    assert kinds == sorted([("changed", edited["key"]), ("missing", deleted["key"]), ("unmanaged", None)])
    changed = next(d for d in drift if d.kind == "changed")
    assert changed.attrs == {
        "displayName": {"expected": edited["attrs"]["displayName"], "actual": "Changed By Hand"}
    }
    assert not any(d.repaired for d in drift)

    _, drift = reconcile_feide(env, repair=True)
    assert {d.kind: d.repaired for d in drift} == {"changed": True, "missing": True, "unmanaged": False}
    assert deleted["key"] not in env.stored()  # forgotten: the next sync creates it again

    _, drift = reconcile_feide(env, repair=False)
    assert [(d.kind, d.where) for d in drift] == [("unmanaged", stray)]

    ok(env.sync("2025-10-02"))
    assert deleted["key"] in env.stored()
    conn = slapd.connect()
    conn.delete(stray)
    conn.unbind()
    _, drift = reconcile_feide(env, repair=False)
    assert drift == []


def test_cli_reports_drift_and_exits_1(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    config = tmp_path / "bas.toml"  # written by make_config
    runner = CliRunner()
    res = runner.invoke(main, ["--config", str(config), "feide", "reconcile", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == []
    person = _persons(env)[0]
    conn = slapd.connect()
    conn.modify(person["attrs"]["dn"], {"mail": [(MODIFY_REPLACE, ["someone@else.example"])]})
    conn.unbind()
    res = runner.invoke(main, ["--config", str(config), "feide", "reconcile"])
    assert res.exit_code == 1, res.output
    assert "changed" in res.output and "mail" in res.output
    res = runner.invoke(main, ["--config", str(config), "feide", "reconcile", "--repair"])
    assert res.exit_code == 0, res.output
    assert "(repaired)" in res.output


def test_a_rename_by_hand_is_reported_as_moved(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    person = _persons(env)[0]
    conn = slapd.connect()
    assert conn.modify_dn(person["attrs"]["dn"], "uid=renamed")
    conn.unbind()
    _, drift = reconcile_feide(env, repair=False)
    # The new RDN replaced the uid value too.
    assert [(d.kind, d.key) for d in drift] == [("moved", person["key"]), ("changed", person["key"])]
    assert drift[1].attrs == {"uid": {"expected": person["attrs"]["uid"], "actual": "renamed"}}


def test_a_missing_base_fails_instead_of_reporting_everything_missing(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    env.configure(base_dn=f"dc=nothere,{env.base_dn}")
    with pytest.raises(FatalError, match="does not exist"):
        reconcile_feide(env, repair=True)
    assert env.stored()  # nothing forgotten
