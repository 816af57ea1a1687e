"""Delegated password resets against a real Samba AD DC (tests/samba_dc.py): the new password
binds over LDAPS as the pupil and the old one no longer does; a must-change is set as configured;
a password the domain refuses is a clear rejected change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.errors import RejectedError
from provisioner.core.plan import Change, Op
from provisioner.core.states import RunStatus
from provisioner.run import password as pw_run
from provisioner.run import runner
from provisioner.run.targets import build_connector
from tests.adtest import ADEnv, can_bind, initial_password
from tests.sisbuilder import small_sis

DAY = "2025-10-01"


@pytest.fixture()
def env(tmp_path: Path, samba_dc) -> Iterator[ADEnv]:
    e = ADEnv(tmp_path, samba_dc, small_sis())
    try:
        yield e
    finally:
        e.close()


def test_the_new_password_binds_and_the_old_one_does_not(env: ADEnv) -> None:
    env.configure(force_change_password_on_reset=False)
    assert env.sync(DAY).exit_code == 0
    username = env.objects()["S1"]["username"]
    dn = env.user("S1", ("cn",))[0]
    old = initial_password(env, username)
    assert can_bind(env.dc, dn, old)
    version = env.store.versions.current()["ad"]

    with capture_logs() as logs:
        out = pw_run.reset_password(env.cfg, env.store, "S1", "kari")
    assert out.exit_code == runner.EXIT_OK and out.status == RunStatus.DONE, out.message
    assert out.password is not None and out.password != old
    assert len(out.password) == 16  # the AD target's password_length
    assert can_bind(env.dc, dn, out.password)
    assert not can_bind(env.dc, dn, old)
    assert env.store.versions.current()["ad"] == version
    assert int(env.user("S1", ("pwdLastSet",))[1]["pwdLastSet"][0]) > 0
    rows = env.store.history.applied(out.run_id, "ad")
    assert rows == {("set_password", "S1")}
    with env.store.engine.connect() as c:
        stored = [list(c.exec_driver_sql(f"SELECT * FROM {t}")) for t in ("changelog", "runs", "objects")]
    assert out.password not in repr(stored) and out.password not in repr(logs)


def test_the_pupil_must_change_it_at_next_logon_by_default(env: ADEnv) -> None:
    assert env.sync(DAY).exit_code == 0
    reason = "password reset by kari (web console)"
    out = pw_run.reset_password(env.cfg, env.store, "S2", "kari", reason=reason)
    assert out.ok, out.message
    entry = env.user("S2", ("pwdLastSet",))
    assert entry is not None and entry[1]["pwdLastSet"] == [b"0"]
    assert [t.message for t in out.targets] == ["new password set"]


def test_a_password_the_domain_refuses_is_a_clear_rejection(env: ADEnv) -> None:
    assert env.sync(DAY).exit_code == 0
    row = env.objects()["S3"]
    conn = build_connector(env.cfg, "ad")
    conn.begin("t", lambda kind, key: row["anchor"] if key == "S3" else None)
    try:
        change = Change("ad", Op.SET_PASSWORD, "person", "S3", "test", username=row["username"], secret="abc")
        with pytest.raises(RejectedError, match="AD refused the new password of person S3") as err:
            conn.apply(change)
        assert "abc" not in str(err.value)
    finally:
        conn.close()
