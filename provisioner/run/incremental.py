"""A plan patched for the persons whose own SIS row changed, instead of a full plan.

When the only difference from the certified plan's inputs (provisioner.core.certificate)
is that some persons' rows changed in their names, e-mail or mobile, the rest of the
plan still holds: the patch derives those persons from the rows that judge them
(provisioner.core.patch.context), maps and diffs only their person objects and
identities, and puts the changes in the certified plan where a full plan has them.
Everything else it cannot prove alike returns None and the run plans in full:

- another table, the config, the state, the day or the local records changed;
- persons came or went, or one's id, NIN or birth date changed;
- more than ``patch.LIMIT`` persons, or their context is large;
- the certified plan had a data error about anyone in the context (a NIN two rows hold
  among them), or deriving the context reports an error the certified plan did not have
  (a context that lacked a row);
- a changed person is frozen, would be issued a username or found under an alias;
- local persons or locks (merged into, and planned over, the whole plan), or a change other than to a
  person object or an identity.

The differ's order makes the splice exact (provisioner/core/patch.py); the property
test runs random SIS edits and asserts after every step that this plan equals the full one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import structlog

from mappings.base import MappingContext
from provisioner.config import Config
from provisioner.core import patch, stored
from provisioner.core.certificate import Certificate, config_digest
from provisioner.core.derive import Derivation, derive
from provisioner.core.diff import diff_core
from provisioner.core.fetched import Fetched
from provisioner.core.model import DesiredPerson
from provisioner.core.plan import CORE, Change, Plan, TargetPlan
from provisioner.core.rows import IdentityRow
from provisioner.core.scope import Scope, restrict
from provisioner.core.states import ObjectStatus
from provisioner.kinds import kind_of
from provisioner.run import local as local_runs
from provisioner.run.targets import diff_objects
from provisioner.state.common import now_iso
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.run")

# meta key: how the last full run's own plan compared with the patch it could have used
CHECK_KEY = "patch_check"


@dataclass(frozen=True)
class Patched:
    """A patched plan, and the changed persons as derived (for the console's directory)."""

    plan: Plan
    persons: Mapping[str, DesiredPerson]
    prints: patch.PersonPrints | None = None  # the snapshot's, to keep for the next run


def patched(
    cfg: Config,
    store: StateStore,
    cert: Certificate,
    read: Fetched,
    as_of: str,
    run_id: str,
) -> Patched | None:
    """The certified plan patched for what was ``read`` (holds not decided yet), or None: plan in full.

    The caller has checked that the certificate's key (config, state, day, code) holds.
    Of the rows read, only the context's are made records (provisioner.core.fetched).
    """
    local_in = local_runs.read_inputs(store)
    if local_in.persons or local_in.locks:
        return None
    digests = dict(read.digests)
    local_runs.with_local_digest(digests, local_in)  # as a full plan records it
    if _differing(digests, cert.source) != {"persons"}:
        return None  # another table (or the local records) changed too
    before = store.certificates.prints(cert.source)
    found = patch.changed_persons(before, read.person_rows()) if before is not None else None
    if not found or not found[0]:
        return None
    changed, prints = found
    ctx = patch.context(read, changed)
    if ctx is None:
        return None
    # A data error about anyone here (a NIN another row holds among them) may freeze them
    # for a reason the context does not show: leave it to a full plan.
    records = {f"person:{p.person_id}" for p in ctx.persons}
    if any(e.record in records for e in cert.plan.errors):
        return None
    ident = store.identities.view_of(
        (p.person_id for p in ctx.persons), (p.nin.strip() for p in ctx.persons if p.nin)
    )
    d = derive(ctx, as_of, ident, cfg.usernames, cfg.lifecycle)
    keys = {ident.aliases.get(p, p) for p in changed}
    if not set(d.state.errors) <= set(cert.plan.errors) or d.state.new_usernames or d.new_aliases:
        return None
    if keys & (d.frozen_persons | d.frozen_groups):
        return None
    got = _patch(cfg, store, cert, d, keys, digests, as_of, run_id)
    return None if got is None else replace(got, prints=prints)


def _differing(a: Mapping[str, str], b: Mapping[str, str]) -> set[str]:
    """The tables (and local records) whose digests differ."""
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def check(store: StateStore, patched_plan: Plan, full_plan: Plan) -> bool:
    """Compare a patch with the full plan of the same inputs (the nightly run makes both).

    The full plan is the one used either way. A difference is logged as an error and kept
    in the store for the daemon, which counts it (``bas_patch_mismatches``): it would be a
    bug in the patch, which the property tests are there to rule out.
    """
    same = _shape(patched_plan) == _shape(full_plan)
    if not same:
        log.error(
            "the patched plan differs from the full plan of the same inputs: the full plan is used",
            run_id=full_plan.run_id,
        )
    store.meta.set(CHECK_KEY, json.dumps({"run_id": full_plan.run_id, "same": same}))
    return same


def _shape(plan: Plan) -> tuple[object, ...]:
    """What a patch must get right: every target's changes in order, populations, errors, counts."""
    return (
        [(tp.target, tuple(tp.changes), tp.population, tp.dry_run) for tp in plan.targets],
        plan.errors,
        plan.active_persons,
        dict(plan.source_counts),
    )


def _patch(
    cfg: Config,
    store: StateStore,
    cert: Certificate,
    d: Derivation,
    keys: set[str],
    digests: dict[str, str],
    as_of: str,
    run_id: str,
) -> Patched | None:
    """Map, diff and splice the changed persons' objects and identities into the certified plan."""
    state = d.state
    identities = store.identities.all(keys)
    school_names = {sid: s.short_name for sid, s in state.schools.items()}
    targets: list[TargetPlan] = []
    live: set[str] = set()
    for name, tcfg in cfg.enabled_targets().items():
        prev = cert.plan.target(name)
        if prev is None:
            return None
        kind = kind_of(tcfg.kind)
        seen = restrict(state, Scope.of(tcfg))
        objs = [
            o
            for o in kind.map_state(seen, MappingContext(cfg.owner, tcfg, as_of))
            if o.kind == "person" and o.key in keys
        ]
        index = store.objects.index(name, keys)
        changes = diff_objects(
            store,
            name,
            kind,
            kind.policy(tcfg),
            objs,
            index,
            d,
            identities=identities,
            school_names=school_names,
            as_of=as_of,
        )
        spliced = _spliced(prev, changes, keys, tcfg.mode == "plan")
        if spliced is None:
            return None
        targets.append(replace(prev, changes=spliced, hold=None))
        live.update(r.person_id for r in index.values() if r.person_id and r.status != ObjectStatus.DELETED)
    core = _core(cfg, cert, d, keys, identities, live, school_names, as_of)
    if core is None:
        return None
    plan = replace(
        cert.plan,
        run_id=run_id,
        created_at=now_iso(),
        cookie=store.versions.current(),
        targets=(core, *targets),
        # Persons came or went in no table (changed_persons): the counts and the schools
        # with affiliations are the certified plan's.
        source_digests=digests,
        basis="incremental",
        schools_gone=(),
        config_digest=config_digest(cfg),
    )
    return Patched(plan, {k: state.persons[k] for k in keys if k in state.persons})


def _core(
    cfg: Config,
    cert: Certificate,
    d: Derivation,
    keys: set[str],
    identities: Mapping[str, IdentityRow],
    live: set[str],
    school_names: Mapping[str, str],
    as_of: str,
) -> TargetPlan | None:
    prev = cert.plan.target(CORE)
    if prev is None:
        return None
    changes = diff_core(
        {k: p for k, p in d.state.persons.items() if k in keys},
        identities,
        new_usernames={},
        new_aliases={},
        frozen=d.frozen_persons,
        live=live,
        retention_days=cfg.lifecycle.retention_days,
        school_names=school_names,
        as_of=as_of,
        inactive_nins={k: v for k, v in d.inactive_nins.items() if k in keys},
        bridged={k: v for k, v in d.bridged.items() if k in keys},
        ended={k: v for k, v in d.ended.items() if k in keys},
    )
    if _untouched(prev, changes, keys):
        return replace(prev, hold=None)
    spliced = patch.splice_core(prev.changes, changes, keys)
    return None if spliced is None else replace(prev, changes=spliced, hold=None)


def _spliced(
    prev: TargetPlan, changes: list[Change], keys: set[str], encode: bool
) -> Sequence[Change] | None:
    """A target's changes patched (kept encoded when untouched); None when they cannot be."""
    if _untouched(prev, changes, keys):
        return prev.changes
    if isinstance(prev.changes, stored.StoredChanges):
        part = patch.splice_stored(prev.changes, changes, keys)  # only the chunks with theirs
        if part is not None:
            return part if encode else part.decoded()
    spliced = patch.splice_target(prev.changes, changes, keys)
    if spliced is None:
        return None
    return stored.encode(spliced) if encode else spliced


def _untouched(prev: TargetPlan, changes: list[Change], keys: set[str]) -> bool:
    """Nothing to change for these persons, and nothing planned for them before: read from
    the stored changes' record, so a plan-only target's 100,000-odd are never decoded."""
    return (
        not changes and isinstance(prev.changes, stored.StoredChanges) and not (prev.changes.persons & keys)
    )
