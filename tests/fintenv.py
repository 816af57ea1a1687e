"""Test helpers for the FINT source: a config whose ``[source]`` is the local fake FINT."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from demo.data import DEMO, Scale, generate
from provisioner import config as config_mod
from provisioner.core.model import SourceSnapshot
from sources.sql import read_snapshot
from tests.fake_fint import FakeFint
from tests.sisbuilder import config_toml

DEMO_DAY = dt.date(2025, 10, 1)


def fint_config(
    tmp: Path, fake: FakeFint, state_url: str | None = None, *, secret: str | None = None, **source: Any
) -> config_mod.Config:
    """A BAS config reading the fake FINT (secrets in files beside the config)."""
    settings = fint_source(tmp, fake, secret=secret, **source)
    text = config_toml(tmp, "sqlite:///unused.db", state_url or f"sqlite:///{tmp / 'state.db'}")
    head, rest = text.split("[source]\n", 1)
    rest = rest.split("\n\n", 1)[1]
    lines = ["[source]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    (tmp / "bas.toml").write_text(head + "\n".join(lines) + "\n\n" + rest, encoding="utf-8")
    return config_mod.load(tmp / "bas.toml")


def fint_source(tmp: Path, fake: FakeFint, *, secret: str | None = None, **source: Any) -> dict[str, Any]:
    """The ``[source]`` settings that read the fake FINT; its secrets written to files in ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "fint-secret").write_text(secret if secret is not None else fake.client_secret, encoding="utf-8")
    (tmp / "fint-password").write_text(fake.password, encoding="utf-8")
    return {
        "kind": "fint",
        "base_url": fake.url,
        "token_url": fake.token_url,
        "client_id": fake.client_id,
        "client_secret_file": "fint-secret",
        "username": fake.username,
        "password_file": "fint-password",
        "ca_file": str(fake.ca_file),
        **source,
    }


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def demo_snapshot(folder: Path, scale: Scale = DEMO, seed: int = 1) -> tuple[str, SourceSnapshot]:
    """Demo data generated into SQLite and read back by the SQL source: (url, snapshot)."""
    db = folder / f"demo-{seed}.db"
    url = f"sqlite:///{db}"
    if not db.exists():
        generate(url, scale, seed=seed, as_of=DEMO_DAY)
    engine = sa.create_engine(url)
    try:
        return url, read_snapshot(engine)
    finally:
        engine.dispose()
