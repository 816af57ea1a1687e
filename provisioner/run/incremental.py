"""A plan patched for the persons or groups whose SIS rows changed, instead of a full plan.

When the only difference from the certified plan's inputs (provisioner.core.certificate)
is in one or both of two tables, the rest of the plan still holds:

- persons: some persons' rows changed in their names, e-mail or mobile. The patch derives
  those persons from the rows that judge them (provisioner.core.patch.context), maps and
  diffs only their person objects and identities;
- memberships: some groups' membership rows changed (provisioner.core.memberships). The
  patch derives those groups and the persons on the rows that came or went, from the
  same context plus every group row (AD and Microsoft 365 name a group by its
  namesakes), with the persons and groups the last full run froze as they were (no one
  is judged by memberships), and maps and diffs only those persons' and groups' objects.

Both at once: those persons and those groups together. Either way it puts the changes
in the certified plan where a full plan has them.
Everything else it cannot prove alike returns None and the run plans in full:

- another table, the config, the state, the day or the local records changed;
- persons came or went, or one's id, NIN or birth date changed;
- more than ``patch.LIMIT`` persons, or ``memberships.LIMIT`` groups, or their context is large;
- the certified plan had a data error about anyone in the context (a NIN two rows hold
  among them), or deriving the context reports an error the certified plan did not have
  (a context that lacked a row);
- a changed person is frozen, would be issued a username or found under an alias;
- a changed group was frozen, or is now; a target has its own scope or extra groups
  (level and owner-wide groups are made of persons a membership patch does not see);
- local persons or locks (merged into, and planned over, the whole plan), or a change other than to a
  person object, a group or an identity.

The differ's order makes the splice exact (provisioner/core/patch.py); the property
test runs random SIS edits and asserts after every step that this plan equals the full one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import structlog

from mappings.base import MappingContext
from provisioner.config import Config
from provisioner.core import memberships, patch, stored
from provisioner.core.certificate import Certificate, config_digest
from provisioner.core.derive import Derivation, derive
from provisioner.core.diff import diff_core
from provisioner.core.fetched import Fetched
from provisioner.core.model import DesiredGroup, DesiredPerson, SourceSnapshot
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
    """A patched plan, and the changed persons and groups as derived (for the console's directory).

    The fingerprints of the table that changed, to keep for the next run; the others are
    the certified plan's, kept for this source too (``None`` here).
    """

    plan: Plan
    persons: Mapping[str, DesiredPerson]
    groups: Mapping[str, DesiredGroup] = field(default_factory=dict)
    prints: patch.PersonPrints | None = None
    group_prints: memberships.GroupPrints | None = None


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
    differing = _differing(digests, cert.source)
    if not differing or not differing <= {"persons", "memberships"}:
        return None  # another table (or the local records) changed too
    run = _Inputs(cfg, store, cert, read, digests, as_of, run_id)
    return _rows_patched(run, "persons" in differing, "memberships" in differing)


@dataclass(frozen=True)
class _Inputs:
    """What a patch is made from: the run's config, store, certificate and read."""

    cfg: Config
    store: StateStore
    cert: Certificate
    read: Fetched
    digests: dict[str, str]  # the read's, with the local records' as a full plan records it
    as_of: str
    run_id: str


def _rows_patched(run: _Inputs, persons: bool, members: bool) -> Patched | None:
    """The patch for persons whose own row changed in names, e-mail or mobile only, and
    (``members``) for groups whose membership rows changed, with the persons on those rows.

    Nothing a person is judged by comes from memberships: for groups, the persons the
    whole run froze are those of the certified plan's run (kept with the membership
    fingerprints; a person patch leaves them so), and so are the groups it froze for a
    member outside the context.
    """
    changed: set[str] = set()
    prints = None
    if persons:
        before = run.store.certificates.prints(run.cert.source)
        found = patch.changed_persons(before, run.read.person_rows()) if before is not None else None
        if not found or not found[0]:
            return None
        changed, prints = found
    moved = _changed_groups(run) if members else None
    if members and moved is None:
        return None
    groups = moved.groups if moved is not None else frozenset()
    on_rows = moved.persons if moved is not None else frozenset()
    ctx = patch.context(run.read, changed | on_rows, groups=groups, every_group=bool(groups))
    if ctx is None:
        return None
    judged = _judged(run, ctx, changed | on_rows)
    if judged is None:
        return None
    d, keys = judged
    if keys & (d.frozen_persons | d.frozen_groups) or groups & d.frozen_groups:
        return None
    counts = None
    if moved is not None:
        frozen_p, frozen_g = moved.prints.frozen_persons, moved.prints.frozen_groups
        state = replace(d.state, groups={k: g for k, g in d.state.groups.items() if k not in frozen_g})
        d = replace(d, state=state, frozen_persons=frozen_p, frozen_groups=frozen_g)
        counts = {**run.cert.plan.source_counts, "memberships": moved.rows}
    got = _patch(run, d, keys, groups, counts)
    if got is None:
        return None
    held = {k: d.state.groups[k] for k in sorted(groups) if k in d.state.groups}
    return replace(got, groups=held, prints=prints, group_prints=moved.prints if moved is not None else None)


def _changed_groups(run: _Inputs) -> memberships.ChangedGroups | None:
    """The groups whose membership rows changed, when a patch may take them (else None)."""
    if not all(Scope.of(t).is_identity for t in run.cfg.enabled_targets().values()):
        return None  # level and owner-wide groups are made of persons the patch does not see
    before = run.store.certificates.group_prints(run.cert.source)
    found = memberships.changed_groups(before, run.read.membership_rows()) if before is not None else None
    # A group frozen before may be judged now, which changes every member's Feide entitlements,
    # not only those of the persons on its changed rows. It also covers the data errors a
    # patch could not drop: a broken membership row, or group row, freezes its group.
    # (No group changed: the rows were only reordered, which moves nothing but errors.)
    if found is None or not found.groups or found.groups & found.prints.frozen_groups:
        return None
    return found


def _judged(run: _Inputs, ctx: SourceSnapshot, changed: Iterable[str]) -> tuple[Derivation, set[str]] | None:
    """The context derived, and the changed persons' canonical ids; None when the certified
    plan had a data error about anyone in it (a NIN another row holds among them may
    freeze them for a reason the context does not show), or deriving it reports one the
    certified plan did not have (a context that lacked a row), or it issues a username or
    finds an alias."""
    records = {f"person:{p.person_id}" for p in ctx.persons}
    if any(e.record in records for e in run.cert.plan.errors):
        return None
    ident = run.store.identities.view_of(
        (p.person_id for p in ctx.persons), (p.nin.strip() for p in ctx.persons if p.nin)
    )
    d = derive(ctx, run.as_of, ident, run.cfg.usernames, run.cfg.lifecycle)
    if not set(d.state.errors) <= set(run.cert.plan.errors) or d.state.new_usernames or d.new_aliases:
        return None
    return d, {ident.aliases.get(p, p) for p in changed}


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
    run: _Inputs,
    d: Derivation,
    keys: set[str],
    groups: frozenset[str],
    counts: Mapping[str, int] | None = None,
) -> Patched | None:
    """Map, diff and splice the objects of persons ``keys`` and groups ``groups``, and the
    persons' identities, into the certified plan. ``counts``: the source's row counts when
    a table's changed (else the certified plan's)."""
    cfg, store, cert, as_of = run.cfg, run.store, run.cert, run.as_of
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
            if (o.kind == "person" and o.key in keys) or (o.kind == "group" and o.key in groups)
        ]
        index = store.objects.index(name, keys | groups)
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
        spliced = _spliced(prev, changes, keys, groups, tcfg.mode == "plan")
        if spliced is None:
            return None
        targets.append(replace(prev, changes=spliced, hold=None))
        live.update(r.person_id for r in index.values() if r.person_id and r.status != ObjectStatus.DELETED)
    core = _core(cfg, cert, d, keys, identities, live, school_names, as_of)
    if core is None:
        return None
    plan = replace(
        cert.plan,
        run_id=run.run_id,
        created_at=now_iso(),
        cookie=store.versions.current(),
        targets=(core, *targets),
        # Persons came or went in no table (changed_persons; memberships move no one's
        # affiliations): the schools with affiliations are the certified plan's.
        source_counts=dict(counts if counts is not None else cert.plan.source_counts),
        source_digests=run.digests,
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
    prev: TargetPlan, changes: list[Change], keys: set[str], groups: frozenset[str], encode: bool
) -> Sequence[Change] | None:
    """A target's changes patched (kept encoded when untouched); None when they cannot be."""
    if _untouched(prev, changes, keys | groups):
        return prev.changes
    if isinstance(prev.changes, stored.StoredChanges):
        part = patch.splice_stored(prev.changes, changes, keys, groups)  # only the chunks with theirs
        if part is not None:
            return part if encode else part.decoded()
    whole = prev.changes.decoded() if isinstance(prev.changes, stored.CountedChanges) else prev.changes
    spliced = patch.splice_target(whole, changes, keys, groups)
    if spliced is None:
        return None
    return stored.encode(spliced) if encode else spliced


def _untouched(prev: TargetPlan, changes: list[Change], keys: set[str]) -> bool:
    """Nothing to change for these persons and groups, and nothing planned for them before: read
    from the stored changes' record, so a plan-only target's 100,000-odd are never decoded."""
    return not changes and isinstance(prev.changes, stored.StoredChanges) and not (prev.changes.keys & keys)
