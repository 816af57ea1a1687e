"""Hybrid Microsoft 365, the pure parts: config, lifecycle policy, mapping, and group changes
that name persons the target lacks (provisioner.apply.absent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.errors import PendingError
from mappings import m365 as m
from mappings.base import MappingContext
from provisioner import config as config_mod
from provisioner.apply.absent import Skipped, narrowed
from provisioner.config import ConfigError, M365Config
from provisioner.core.plan import Change, Op
from provisioner.core.states import ChangeResult
from provisioner.kinds import kind_of
from tests.sisbuilder import config_toml
from tests.test_mapping_feide import OWNER, make_state

LIVE = 'tenant_id = "t"\nclient_id = "c"\nclient_secret_file = "s"\n'


def parse(tmp: Path, m365: str, ads: tuple[str, ...] = ()) -> config_mod.Config:
    base = config_toml(tmp, "sqlite://", "sqlite://", targets=())
    for name in ads:
        base += f'\n[targets.{name}]\nkind = "ad"\nmode = "plan"\n'
    return config_mod.parse(base + "\n[targets.m365]\n" + m365)


@pytest.mark.parametrize(
    ("m365", "mode", "users"),
    [
        ('mode = "hybrid"\n' + LIVE, "apply", "synced"),  # the literal setting
        ('mode = "hybrid"\nusers = "synced"\n' + LIVE, "apply", "synced"),
        ('mode = "plan"\nusers = "synced"\n', "plan", "synced"),  # plans hybrid, applies nothing
        ('mode = "apply"\n' + LIVE, "apply", "cloud"),
        ("", "plan", "cloud"),
    ],
)
def test_mode_and_users(tmp_path: Path, m365: str, mode: str, users: str) -> None:
    t = parse(tmp_path, m365).targets["m365"]
    assert isinstance(t, M365Config) and (t.mode, t.users) == (mode, users)


@pytest.mark.parametrize(
    ("m365", "ads", "error"),
    [
        (
            'mode = "hybrid"\nusers = "cloud"\n' + LIVE,
            (),
            r'targets\.m365\.m365: mode = "hybrid" means users = "synced", not users = \'cloud\'',
        ),
        ('mode = "hybrid"\n', (), r'targets\.m365\.m365: mode = "hybrid" needs tenant_id, client_id'),
        (
            'mode = "hybrids"\n',
            (),
            r"targets\.m365\.m365: mode must be \"plan\", \"apply\" or \"hybrid\", not 'hybrids'",
        ),
        (
            'users = "synced"\nad_target = "dc"\n',
            ("ad",),
            r"targets\.m365\.ad_target: 'dc' is not an AD target \(AD",
        ),
        ('users = "synced"\n', ("ad", "ad2"), r"targets\.m365\.ad_target: name the AD target .*\(ad, ad2\)"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, m365: str, ads: tuple[str, ...], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse(tmp_path, m365, ads)


@pytest.mark.parametrize(
    ("m365", "ads", "expected"),
    [
        ('users = "synced"\n', ("ad",), "ad"),  # the only AD target
        ('users = "synced"\nad_target = "ad2"\n', ("ad", "ad2"), "ad2"),
        ('users = "synced"\n', (), None),  # no AD target: employeeId alone
    ],
)
def test_which_ad_target_gives_the_immutable_ids(
    tmp_path: Path, m365: str, ads: tuple[str, ...], expected: str | None
) -> None:
    cfg = parse(tmp_path, m365, ads)
    assert cfg.synced_ad_target("m365") == expected
    described = kind_of("m365").describe
    assert described is not None and "users synced from AD" in described(cfg, "m365")


def test_policy_revokes_then_releases_never_soft_deletes() -> None:
    policy = kind_of("m365").policy
    hybrid = policy(M365Config(users="synced", remove_after_days=14))
    assert (hybrid.disable_first, hybrid.delete_after_days, hybrid.soft_delete) == (True, 14, False)
    cloud = policy(M365Config())
    assert (cloud.disable_first, cloud.delete_after_days, cloud.soft_delete) == (True, 0, True)


def test_synced_users_carry_only_what_the_cloud_may_write() -> None:
    cfg = M365Config(users="synced", usage_location="NO")
    objs = list(m.map_state(make_state(), MappingContext(owner=OWNER, target=cfg, as_of="2025-09-01")))
    users = {o.key: o for o in objs if o.kind == "person"}
    cloud = {o.key for o in m.map_state(make_state(), MappingContext(OWNER, M365Config(), "2025-09-01"))}
    assert set(users) == cloud - {o.key for o in objs if o.kind == "group"}  # the same persons
    assert users["S1"].attrs == {"usageLocation": "NO", "role": "student"}
    assert users["T1"].attrs == {"usageLocation": "NO", "role": "teacher"}
    assert users["S1"].username and users["S1"].person_id == "S1"
    # Groups are the cloud target's, owners and members included.
    groups = [o for o in objs if o.kind == "group"]
    assert groups and any(o.links.get("owners") for o in groups)


def change(op: Op, **kw: Any) -> Change:
    return Change(target="m365", op=op, kind="group", key="G", reason="r", **kw)


P, F = ChangeResult.PENDING, ChangeResult.FAILED
MEMBERS = (("S1", "student"), ("S2", "student"), ("T1", "teacher"))


@pytest.mark.parametrize(
    ("c", "absent", "members", "links", "outcome"),
    [
        (change(Op.ADD_MEMBERS, members=MEMBERS), {}, MEMBERS, None, None),
        (change(Op.ADD_MEMBERS, members=MEMBERS), {"S2": P}, (MEMBERS[0], MEMBERS[2]), None, None),
        (change(Op.ADD_MEMBERS, members=MEMBERS[:2]), {"S1": P, "S2": P}, MEMBERS[:2], None, PendingError),
        (change(Op.ADD_MEMBERS, members=MEMBERS[:2]), {"S1": P, "S2": F}, MEMBERS[:2], None, Skipped),
        # Owners: a pending one is left out (added once synced); a failed one is the connector's.
        (change(Op.CREATE, links={"owners": ["T1", "T2"]}), {"T1": P}, (), {"owners": ["T2"]}, None),
        (change(Op.CREATE, links={"owners": ["T1"]}), {"T1": F}, (), {"owners": ["T1"]}, None),
        (
            change(Op.UPDATE, links={"owners": ["T1", "T2"]}, before={"owners": ["T2"]}),
            {"T1": P},
            (),
            {"owners": ["T1", "T2"]},
            PendingError,
        ),
        (
            change(Op.UPDATE, links={"owners": ["T3"]}, before={"owners": ["T2"]}),
            {"T1": P},
            (),
            {"owners": ["T3"]},
            None,
        ),
    ],
)
def test_group_changes_leave_out_persons_the_target_lacks(
    c: Change, absent: dict[str, ChangeResult], members: tuple, links: dict | None, outcome: type | None
) -> None:
    out, why = narrowed(c, absent)
    assert out.members == members
    if links is not None:
        assert dict(out.links) == links
    assert (type(why) if why is not None else None) is outcome
