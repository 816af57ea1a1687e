"""Helpers for the Microsoft 365 tests: a local Graph, a tiny SIS, a config applying to it, reads.

For hybrid mode (``users = "synced"``) an ``M365Env`` made with ``ad=True`` also has an
AD target, applied by ``RecordingAD``: it stands in for the AD connector (the Samba DC
tests are elsewhere) and gives each created account an objectGUID, the anchor Entra
Connect's immutable id comes from; ``sync_from_ad`` then plays the sync cycle, seeding
the local Graph with those users as Entra Connect would.
"""

from __future__ import annotations

import csv
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import AnchorResolver, Applied, Connector, StoredObject
from connectors.m365.synced import immutable_id
from provisioner import config as config_mod
from provisioner.core.plan import Change, Op
from provisioner.kinds import m365_connector
from provisioner.run import runner
from provisioner.run.runner import RunOutcome
from provisioner.run.targets import build_connector
from provisioner.state.store import StateStore
from tests.fake_graph import FakeGraph, VirtualClock
from tests.sisbuilder import Sis, config_toml, small_sis

SKU_STUDENT = "314c4481-f395-4525-be8b-2ec4bb1e9d91"  # the A1 for students SKU id
SKU_TEACHER = "94763226-9b3c-4e75-a931-5c89701abe66"  # the A1 for faculty SKU id
PLAN_OFF = "a23b959c-7ce8-4e57-9140-b90eb88a9e97"  # a service plan switched off


class RecordingAD(Connector):
    """An AD target's stand-in: creates "accounts" with new objectGUIDs and remembers them."""

    def __init__(self, name: str = "ad") -> None:
        self.target = name
        self.guids: dict[str, str] = {}  # person key -> objectGUID
        self.disabled: set[str] = set()

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Nothing to open."""

    def apply(self, change: Change) -> Applied:
        """A create gets a new objectGUID; a disable is remembered; the rest keep their anchor."""
        if change.op is Op.CREATE:
            guid = str(uuid.uuid4())
            if change.kind == "person":
                self.guids[change.key] = guid
            return Applied(anchor=guid)
        if change.op is Op.DISABLE:
            self.disabled.add(change.key)
        return Applied(anchor=change.anchor)

    def finish(self, current: Iterable[StoredObject]) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing held."""


class M365Env:
    """A tiny SIS, a state store and a config whose m365 target applies to a FakeGraph.

    With ``clock`` (a VirtualClock) the FakeGraph and the connector's Graph client share it.
    """

    def __init__(
        self,
        tmp: Path,
        sis: Sis,
        *,
        skus: tuple[str, ...] = (SKU_STUDENT, SKU_TEACHER),
        clock: VirtualClock | None = None,
        ad: bool = False,
        m365: dict[str, Any] | None = None,
    ) -> None:
        self.tmp, self.sis, self.clock = tmp, sis, clock
        self.ad = RecordingAD() if ad else None
        self.graph = FakeGraph(tmp / "graph", skus=skus, clock=clock)
        self.src = f"sqlite:///{tmp / 'sis.db'}"
        self.store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        (tmp / "graph.secret").write_text(self.graph.client_secret + "\n", encoding="utf-8")
        self.password_dir = tmp / "pw"
        self.owner_id = self.graph.directory.add_user(
            userPrincipalName="it-admin@skole.eksempel.no", displayName="IT", mailNickname="it-admin"
        )
        self.licenses: dict[str, list[dict[str, Any]]] = {
            "student": [{"sku_id": SKU_STUDENT, "disabled_plans": [PLAN_OFF]}],
            "teacher": [{"sku_id": SKU_TEACHER}],
        }
        self.configure(**(m365 or {}))

    def settings(self, **m365: Any) -> dict[str, Any]:
        """The scalar [targets.m365] settings for this fake Graph (overridable; None leaves one out)."""
        settings = {
            "mode": "apply",
            "tenant_id": self.graph.tenant,
            "client_id": self.graph.client_id,
            "client_secret_file": str(self.tmp / "graph.secret"),
            "authority_host": self.graph.url,
            "graph_url": self.graph.graph_url,
            "ca_file": str(self.graph.ca_file),
            "password_dir": str(self.password_dir),
            "fallback_owner": "it-admin@skole.eksempel.no",
            "timeout": 20.0,
            **m365,
        }
        return {k: v for k, v in settings.items() if v is not None}

    def config_text(self, **m365: Any) -> str:
        """The whole config TOML (licences appended as tables)."""
        ad = {
            "mode": "apply",  # applied by RecordingAD: these only pass the config's checks
            "url": "ldaps://dc.invalid",
            "ca_file": "ca.pem",
            "bind_dn": "CN=bas",
            "password_file": "ad.secret",
        }
        text = config_toml(
            self.tmp,
            self.src,
            self.store.url,
            targets=("ad", "m365") if self.ad is not None else ("m365",),
            target_settings={"m365": self.settings(**m365), "ad": ad},
        )
        for role, lics in self.licenses.items():
            for lic in lics:
                text += f'\n[[targets.m365.licenses.{role}]]\nsku_id = "{lic["sku_id"]}"\n'
                if lic.get("disabled_plans"):
                    text += "disabled_plans = [" + ", ".join(f'"{p}"' for p in lic["disabled_plans"]) + "]\n"
        return text

    def configure(self, **m365: Any) -> None:
        """(Re)write and load the config."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / "bas.toml"
        path.write_text(self.config_text(**m365), encoding="utf-8")
        self.config_path = path
        self.cfg = config_mod.load(path)

    def connect(self, cfg: config_mod.Config, name: str) -> Connector:
        """The connector of a target; the Microsoft 365 one on this env's clock."""
        if cfg.targets[name].kind == "m365":
            return m365_connector(cfg, name, clock=self.clock)
        if cfg.targets[name].kind == "ad" and self.ad is not None:
            return self.ad
        return build_connector(cfg, name)

    def sync_from_ad(self, *pids: str, immutable: bool = True) -> dict[str, str]:
        """Entra Connect's sync cycle for these persons: their AD accounts as synced users (pid -> id).

        ``immutable=False``: the users carry an immutable id BAS cannot know (only employeeId matches).
        """
        assert self.ad is not None
        out = {}
        for pid in pids:
            guid = self.ad.guids[pid] if immutable else str(uuid.uuid4())
            username = self.store.objects.index("ad")[pid].username
            out[pid] = self.graph.directory.add_synced_user(
                immutable_id(guid), pid, f"{username}@skole.eksempel.no", department="AD", jobTitle="AD"
            )
        return out

    def sync(self, as_of: str, **kw: Any) -> RunOutcome:
        """Write the SIS and run one sync."""
        self.sis.write(self.src)
        return runner.sync(self.cfg, self.store, as_of=as_of, connect=self.connect, **kw)

    def objects(self) -> dict[str, dict[str, Any]]:
        """The m365 target's stored objects by key."""
        return {o["key"]: o for o in self.store.objects.iterate("m365")}

    def user(self, pid: str) -> dict[str, Any] | None:
        """The tenant's active user of a person (by the stored anchor)."""
        return self.graph.directory.users.get(self.objects()[pid]["anchor"])

    def changelog(self, result: str | None = None) -> list[dict[str, Any]]:
        """Changelog rows of the m365 target."""
        with self.store.engine.connect() as c:
            rows = [
                dict(r._mapping) for r in c.exec_driver_sql("SELECT * FROM changelog WHERE target = 'm365'")
            ]
        return [r for r in rows if result is None or r["result"] == result]

    def passwords(self) -> dict[str, str]:
        """username -> password from the school office files (each checked to be 0600)."""
        out = {}
        for f in self.password_dir.glob("*.csv"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
            rows = list(csv.reader(f.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
            out.update({r[0]: r[2] for r in rows[1:]})
        return out

    def close(self) -> None:
        """Stop the fake Graph and release the store."""
        self.graph.close()
        self.store.close()


@pytest.fixture()
def m365_env(tmp_path: Path) -> Iterator[M365Env]:
    """An M365Env on the small SIS (a pytest fixture, shared through conftest's pytest_plugins)."""
    e = M365Env(tmp_path, small_sis())
    try:
        yield e
    finally:
        e.close()
