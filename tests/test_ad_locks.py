"""Locks against a real Samba AD DC: `bas lock` disables and parks the account, syncs keep it
disabled, `bas unlock` enables it in place again, and a lock never deletes (tests/samba_dc.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.core.dn import parent as parent_dn
from provisioner.core.plan import Op
from provisioner.core.states import ObjectStatus
from tests.adtest import ADEnv, can_bind, initial_password, uac
from tests.sisbuilder import small_sis

DAY1, DAY2, DAY3 = "2025-10-01", "2025-10-02", "2025-10-03"
DISABLED = 2  # userAccountControl ACCOUNTDISABLE


@pytest.fixture()
def env(tmp_path: Path, samba_dc) -> Iterator[ADEnv]:
    e = ADEnv(tmp_path, samba_dc, small_sis())
    try:
        yield e
    finally:
        e.close()


def _changes(out, key: str) -> list[tuple[Op, str]]:
    return [(c.op, c.reason) for c in out.plan.target("ad").changes if c.key == key]


def test_lock_disables_keeps_disabled_and_unlock_enables_in_place(env: ADEnv) -> None:
    assert env.sync(DAY1).exit_code == 0
    home = parent_dn(env.user("T1", ("cn",))[0]).lower()
    assert not uac(env.user("T1", ("userAccountControl",))) & DISABLED
    password = initial_password(env, env.objects()["T1"]["username"])
    assert can_bind(env.dc, env.user("T1", ("cn",))[0], password)

    env.store.local.lock("T1", ["ad"], "misuse", None, "ola")
    out = env.sync(DAY1)
    assert out.exit_code == 0, out.message
    assert _changes(out, "T1") == [(Op.DISABLE, "locked by ola: misuse")]
    entry = env.user("T1", ("userAccountControl",))
    assert uac(entry) & DISABLED
    assert env.objects()["T1"]["status"] == ObjectStatus.DISABLED
    assert not can_bind(env.dc, entry[0], password)  # the right password no longer signs in

    for day in (DAY2, DAY3):  # further syncs plan nothing for them and leave them disabled
        out = env.sync(day)
        assert _changes(out, "T1") == []
        assert uac(env.user("T1", ("userAccountControl",))) & DISABLED

    env.store.local.unlock("T1", None, "kari")
    out = env.sync(DAY3)
    [(op, reason)] = _changes(out, "T1")
    assert op is Op.ENABLE and reason.startswith("unlocked by kari on ")
    entry = env.user("T1", ("userAccountControl",))
    assert not uac(entry) & DISABLED
    assert parent_dn(entry[0]).lower() == home  # back where it lived, the same object
    assert env.objects()["T1"]["status"] == ObjectStatus.ACTIVE
    assert can_bind(env.dc, entry[0], password)


def test_a_locked_person_who_leaves_is_never_deleted_by_the_lock(env: ADEnv) -> None:
    assert env.sync(DAY1).exit_code == 0
    anchor = env.objects()["S2"]["anchor"]
    env.store.local.lock("S2", ["*"], "leave of absence", None, "ola")
    assert env.sync(DAY1).exit_code == 0
    env.sis.end_enrollments("S2", DAY1)
    out = env.sync(DAY2)
    assert out.exit_code == 0, out.message
    assert Op.DELETE not in {op for op, _ in _changes(out, "S2")}
    entry = env.user("S2", ("userAccountControl",))
    assert entry is not None and uac(entry) & DISABLED
    assert env.objects()["S2"]["anchor"] == anchor
