"""The Microsoft 365 connector under throttling, 503 storms, dropped connections and odd names."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import RejectedError
from provisioner.core.plan import Change, Op
from provisioner.kinds import m365_connector
from tests.fake_graph import VirtualClock
from tests.m365test import M365Env
from tests.sisbuilder import Sis, small_sis

DAY1, DAY2 = "2025-10-01", "2025-10-02"


def big_sis(n: int) -> Sis:
    s = Sis()
    s.school("NORD", "974000001", "NORDBY")
    s.employee("T1", "NORD", "Kari", "Lærer")
    members = [("T1", "teacher")]
    for i in range(n):
        s.student(f"S{i:05d}", "NORD", f"Elev{i}", "Nordmann")
        if i < 40:
            members.append((f"S{i:05d}", "student"))
    s.group("NORD-7B", "NORD", "basis", "7B", members=members)
    return s


def test_throttled_onboarding_of_2000_users_loses_nothing(tmp_path: Path) -> None:
    clock = VirtualClock()
    e = M365Env(tmp_path, big_sis(2000), clock=clock)
    try:
        # 1,500 writes per 150 s on a clock the client and Graph share: time passes only when the
        # client waits, so the limit is met however fast the machine is, and waited out at once.
        e.graph.throttle(1500, 150.0)
        out = e.sync(DAY1)
        assert out.exit_code == 0, out.results["m365"].errors[:3]
        assert out.results["m365"].failed == 0 and out.results["m365"].rejected == 0
        assert e.graph.counts["throttled"] > 0  # it was throttled, and waited it out
        assert clock.now() >= 150.0  # over 1,500 writes: the second window had to be waited for
        users = [u for u in e.graph.directory.users.values() if u.get("employeeId")]
        assert len(users) == 2001 and len({u["employeeId"] for u in users}) == 2001
        assert all(u["assignedLicenses"] for u in users)
        assert len(e.passwords()) == 2001
        g = e.objects()["NORD-7B"]["anchor"]
        assert len(e.graph.directory.members[g]) == 41
        e.graph.reset_counts()
        assert e.sync(DAY2).plan.target("m365").changes == () and e.graph.writes == 0
    finally:
        e.close()


def test_503_storm_and_dropped_connections_create_each_user_once(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        e.sync(DAY1, dry_run=True)
        e.graph.fail_next(4, retry_after="0")  # whole requests answer 503
        e.graph.fail_inner_next(25)  # and requests inside batches
        e.graph.drop_next(2, after=True)  # creates go through, their answers are lost
        out = e.sync(DAY1)
        assert out.exit_code == 0, out.results["m365"].errors
        d = e.graph.directory
        ids = [u["employeeId"] for u in d.users.values() if u.get("employeeId")]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 9
        # Every password the tenant holds is the one the school office got (lost answers too).
        pws = e.passwords()
        for pid, o in e.objects().items():
            if o["kind"] == "person":
                assert d.passwords[o["anchor"]] == pws[o["username"]], pid
        assert e.sync(DAY2).plan.target("m365").changes == ()
    finally:
        e.close()


def test_quotes_emoji_idempotent_create_and_delete(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        conn = m365_connector(e.cfg, "m365")
        conn.begin("run1", lambda kind, key: None)
        attrs = {
            "userPrincipalName": "o'brien.zoe@skole.eksempel.no",
            "mailNickname": "obrienzoe",
            "displayName": "Zoë O'Brien 😀",
            "givenName": "Zoë",
            "surname": "O'Brien",
            "employeeId": "P'1",
            "usageLocation": "NO",
            "department": "Nord skole",
            "jobTitle": "student",
        }
        create = Change("m365", Op.CREATE, "person", "P'1", "test", username="obrienzoe", attrs=attrs)
        first = conn.apply(create)
        assert first.anchor and first.note is None
        u = e.graph.directory.users[first.anchor]
        assert u["displayName"] == "Zoë O'Brien 😀" and u["surname"] == "O'Brien"
        # The same create again (a run that died before recording it): found by employeeId.
        conn.begin("run2", lambda kind, key: None)
        e.graph.reset_counts()
        again = conn.apply(create)
        assert again.anchor == first.anchor and again.note == "already existed (same employeeId)"
        assert e.graph.writes == 0  # nothing differed: no write
        delete = Change("m365", Op.DELETE, "person", "P'1", "test", anchor=first.anchor)
        assert conn.apply(delete).note is None
        assert conn.apply(delete).note == "already gone"
        assert first.anchor in e.graph.directory.deleted
        conn.close()
    finally:
        e.close()


def test_group_create_adopts_its_own_group_and_refuses_a_stranger(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        conn = m365_connector(e.cfg, "m365")
        conn.begin("run1", lambda kind, key: None)
        attrs = {
            "displayName": "NORDBY 6A",
            "mailNickname": "NORD-6A",
            "description": "Klasse 6A",
            "groupType": "security",
            "securityEnabled": True,
            "mailEnabled": False,
            "owners": [],
        }
        create = Change("m365", Op.CREATE, "group", "NORD-6A", "test", attrs=attrs)
        first = conn.apply(create)
        assert e.graph.directory.owners[first.anchor] == {e.owner_id}  # never ownerless
        again = conn.apply(create)
        assert (again.anchor, again.note) == (first.anchor, "already existed")
        stranger = Change(
            "m365", Op.CREATE, "group", "X", "test", attrs={**attrs, "displayName": "Teachers' club"}
        )
        with pytest.raises(RejectedError, match="NORD-6A"):
            conn.apply(stranger)
        assert len(e.graph.directory.groups) == 1
        conn.close()
    finally:
        e.close()
