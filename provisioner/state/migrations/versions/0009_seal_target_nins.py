"""Seal the NINs that target objects, held plans and the export journal kept whole.

Since this revision a NIN in a target attribute (Feide's norEduPersonNIN) is planned and
stored sealed (provisioner.core.nin_seal); the historic base alone keeps it whole. This
revision makes the store's seal key (meta ``nin_seal_key``) and seals what was written
before, as a run seals it now: the ``objects`` rows (with their digests, so that the
next run finds them unchanged), the held plans (``runs.plan``) and a killed run's export
journal (``pending_exports``). The certified plan and its fingerprints (``plan_parts``)
are compressed: they are dropped with the certificate, and the next run plans in full.
Data only; no way back (a sealed NIN cannot be unsealed without the historic base, so
the downgrade leaves the rows as they are).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op

from provisioner.core.nin_seal import NinSeal
from provisioner.core.rows import digest_json, dumps

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 5000
_NIN_ATTRS = ("norEduPersonNIN",)  # mappings.feide.NIN_ATTRS when this revision was written
_WHOLE = re.compile(r"[0-9]{11}")
_KEY = "nin_seal_key"


def _sealed(value: Any, seal: NinSeal) -> tuple[Any, bool]:
    """``value`` (parsed JSON) with every whole NIN under a NIN attribute's name sealed; whether any was."""
    if isinstance(value, list):
        out, hit = [], False
        for v in value:
            v, h = _sealed(v, seal)
            out.append(v)
            hit = hit or h
        return out, hit
    if not isinstance(value, dict):
        return value, False
    out_d: dict[str, Any] = {}
    hit = False
    for k, v in value.items():
        if k in _NIN_ATTRS and isinstance(v, str) and _WHOLE.fullmatch(v):
            out_d[k], hit = seal(v), True
        else:
            out_d[k], h = _sealed(v, seal)
            hit = hit or h
    return out_d, hit


def _key(conn: sa.Connection) -> NinSeal:
    meta = sa.table("meta", sa.column("key"), sa.column("value"))
    got = conn.execute(sa.select(meta.c.value).where(meta.c.key == _KEY)).scalar()
    if got is None:
        got = secrets.token_hex(32)
        conn.execute(meta.insert().values(key=_KEY, value=got))
    return NinSeal(bytes.fromhex(got))


def _rewrite(
    conn: sa.Connection, name: str, pk: tuple[str, ...], column: str, seal: NinSeal, *, digest: bool
) -> None:
    """Seal the NINs in one JSON column, a batch of rows at a time (``digest``: objects' too)."""
    extra = ("kind", "members") if digest else ()
    table = sa.table(name, *(sa.column(c) for c in (*pk, column, *extra, "digest")))
    key = sa.tuple_(*(table.c[c] for c in pk)) if len(pk) > 1 else table.c[pk[0]]
    last: Any = None
    while True:
        q = sa.select(*(table.c[c] for c in (*pk, column, *extra))).order_by(*(table.c[c] for c in pk))
        q = q.where(table.c[column].like("%norEduPersonNIN%")).limit(_BATCH)
        if last is not None:
            q = q.where(key > (sa.tuple_(*last) if len(pk) > 1 else last[0]))
        rows = conn.execute(q).all()
        if not rows:
            return
        n = len(pk)
        for row in rows:
            text = row[n]
            value, hit = _sealed(json.loads(text), seal) if text else (None, False)
            if not hit:
                continue
            # Objects' attributes as the writer encodes them (canonical), and their digest anew.
            new = dumps(value) if digest else json.dumps(value, ensure_ascii=False)
            values: dict[str, Any] = {column: new}
            if digest:
                values["digest"] = digest_json(row[n + 1], new, row[n + 2])
            where = [table.c[c] == v for c, v in zip(pk, row[:n])]
            conn.execute(table.update().where(*where).values(**values))
        last = tuple(rows[-1][:n])


def upgrade() -> None:
    """Make the seal key; seal stored objects, held plans and the export journal; drop the certificate."""
    conn = op.get_bind()
    seal = _key(conn)
    _rewrite(conn, "objects", ("target", "key"), "attrs", seal, digest=True)
    _rewrite(conn, "runs", ("run_id",), "plan", seal, digest=False)
    _rewrite(conn, "pending_exports", ("id",), "changes", seal, digest=False)
    op.execute("DELETE FROM meta WHERE key = 'plan_certificate'")
    op.execute("DELETE FROM plan_parts")
    op.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Nothing to undo: sealed numbers stay sealed (the key stays, as the seals need it)."""
    op.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
