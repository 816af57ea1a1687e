"""A plan patched for the persons or groups whose SIS rows changed, instead of a full plan.

When the only difference from the certified plan's inputs (provisioner.core.certificate)
is in these tables, the rest of the plan still holds:

- persons: some persons' rows changed in their names, e-mail or mobile. The patch derives
  those persons from the rows that judge them (provisioner.core.patch.context), maps and
  diffs only their person objects and identities;
- memberships: some groups' membership rows changed (provisioner.core.memberships). The
  patch derives those groups and the persons on the rows that came or went, from the
  same context plus every group row (AD and Microsoft 365 name a group by its
  namesakes), with the persons and groups the last full run froze as they were (no one
  is judged by memberships), and maps and diffs only those persons' and groups' objects;
- joiners: persons came, with rows of their own in enrollments, employments,
  guardianships (and memberships, as above), and those tables changed by nothing else
  (Fetched.digest_without). The patch derives them, the guardians of a joining pupil,
  and everyone at their schools (whose school-wide groups they join), issues their
  usernames against the whole historic base, and maps and diffs the joiners', those
  guardians' and those school-wide groups' objects; the count of active persons follows
  by difference (the context derived with and without them);
- movers: persons whose own enrollment or employment rows changed (an end date: a pupil
  who leaves; another school, a start date: one who moves or comes back), found by
  each person's fingerprint of those rows, which keeps the rows they had
  (provisioner.core.affiliations). The patch derives them as it derives joiners, with
  the schools they were at and are at held whole, their guardians and their groups; the
  count of active persons follows by difference (the context derived with their rows
  then and now), and so does every data error about them.

Any of them at once: those persons and groups together. Either way it puts the changes
in the certified plan where a full plan has them.

When their context is past its bound (``patch.context_bound``: 1 % churn touches every
school and many groups), a wide patch derives everyone, as a full plan does, from the
whole snapshot (taken from the read: a full plan after it reads the source again), and
still maps, diffs and splices only those persons and groups. Its derivation is the full
plan's, so the active count and the data errors are its own; it is taken only when it
froze whom the certified plan's run froze and found the same data errors, and when no
target's earlier changes would cost more than ``patch.WIDE_DECODED`` decoded.
Everything else it cannot prove alike returns None and the run plans in full:

- another table, the config, the state, the day or the local records changed;
- persons went, or one's id, NIN or birth date changed; a guardianship of someone who
  did not join changed;
- more persons than ``patch.person_limit``, or groups than ``memberships.limit_for``;
- the certified plan had a data error about anyone in the context (a NIN two rows hold
  among them), or deriving the context reports an error the certified plan did not have
  (a context that lacked a row);
- a changed person is frozen, or found under an alias; a joiner has the NIN of another
  SIS person, or joins a school no one was at; a mover leaves a school with no one, or
  a data error about a mover's rows comes or goes; a username is issued while the certified
  plan issued one not yet recorded (a dry run), or when no one joined or moved;
- a changed group was frozen, or is now; a target has its own scope or extra groups
  (level and owner-wide groups are made of persons the patch does not see);
- local persons or locks (merged into, and planned over, the whole plan), or a change other than to a
  person object, a group or an identity.

The differ's order makes the splice exact (provisioner/core/patch.py); the property
test runs random SIS edits and asserts after every step that this plan equals the full one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from mappings.base import MappingContext
from provisioner.apply.collector import release_freed
from provisioner.config import Config
from provisioner.core import affiliations, memberships, patch, stored
from provisioner.core.certificate import Certificate, config_digest, plan_from
from provisioner.core.derive import Derivation, IdentityView, derive
from provisioner.core.diff import diff_core
from provisioner.core.fetched import Fetched
from provisioner.core.model import (
    TABLES,
    DesiredGroup,
    DesiredPerson,
    SourceSnapshot,
)
from provisioner.core.plan import CORE, Change, Op, Plan, TargetPlan
from provisioner.core.rows import IdentityRow
from provisioner.core.scope import Scope, restrict
from provisioner.core.states import ObjectStatus, PlanBasis
from provisioner.kinds import kind_of
from provisioner.run import checked, detect
from provisioner.run import local as local_runs
from provisioner.run import reach as reaches
from provisioner.run.targets import diff_objects
from provisioner.state.common import now_iso
from provisioner.state.nins import nin_seal
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.run")

# Tables a joiner brings rows of their own to, and the columns that name a person there:
# guardianships may differ from the certified read by those rows only (Fetched.digest_without
# proves it); enrollments and employments by any person's rows, which their fingerprints
# find (provisioner.core.affiliations).
_JOINER_ROWS: dict[str, tuple[str, ...]] = {
    "enrollments": ("person_id",),
    "employments": ("person_id",),
    "guardianships": ("guardian_id", "student_id"),
}
_AFFILIATED = frozenset(affiliations.TABLES)
_DATA_DIGESTS = frozenset(TABLES) | {local_runs.LOCAL_DIGEST}  # what a patch compares (_differing)
_PATCHABLE = frozenset({"persons", "memberships", *_JOINER_ROWS})


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
    affiliation_prints: memberships.GroupPrints | None = None


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
    if not differing and digests != cert.source:
        # Only where the read came from differs (a new PIFU export of the same rows): the
        # certified plan stands, kept with this read's digests (the next run compares with
        # those: the same export again is not read again).
        plan = plan_from(cert, run_id, now_iso(), store.versions.current())
        return Patched(replace(plan, source_digests=digests, config_digest=config_digest(cfg)), {})
    if not differing or not differing <= _PATCHABLE:
        return None  # another table (or the local records) changed too
    run = _Inputs(cfg, store, cert, read, digests, as_of, run_id)
    known = checked.assumed(store, read)  # the unchanged tables' key columns need no check again
    try:
        got = _rows_patched(run, differing)
    except stored.Unreadable as exc:  # the certified plan's chunk keys (read only now)
        log.warning("the certified plan cannot be patched; planning in full", run_id=run_id, error=str(exc))
        return None
    checked.keep(store, read, known)  # (a patch that raised keeps nothing: only a cache)
    return got


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


def _rows_patched(run: _Inputs, differing: set[str]) -> Patched | None:
    """The patch for persons whose own row changed in names, e-mail or mobile only, persons
    who joined (with rows of their own in the tables of ``_JOINER_ROWS``), persons whose
    enrollment or employment rows changed (movers), and groups whose membership rows
    changed, with the persons on those rows.

    Nothing a person is judged by comes from memberships: for groups, the persons the
    whole run froze are those of the certified plan's run (kept with the membership
    fingerprints; a person patch leaves them so), and so are the groups it froze for a
    member outside the context. A joiner or mover changes their schools' school-wide
    groups (then and now), their groups, and the guardians of a pupil among them: the
    context holds those schools whole. Past its bound, everyone is derived (a wide patch).
    """
    changed: set[str] = set()
    joined: frozenset[str] = frozenset()
    prints = None
    if "persons" in differing:
        found = _persons(run)
        if found is None:
            return None
        changed, prints, joined = found
    affiliated = (
        detect.affiliations_of(run.store, run.cert, run.read, joined) if differing & _AFFILIATED else None
    )
    if differing & _AFFILIATED and affiliated is None:
        return None
    was = {p: rows for p, rows in affiliated.before.items() if p not in joined} if affiliated else {}
    if not _only_joined(run, differing, joined) or reaches.shares_a_nin(run.read, joined):
        return None
    moved = (
        detect.memberships_of(run.store, run.cert, run.read, joined) if "memberships" in differing else None
    )
    if "memberships" in differing and moved is None:
        return None
    came = joined | frozenset(was)  # persons whose affiliations (and so activity) may change
    if (came or moved is not None) and not _identity_scoped(run.cfg):
        return None
    groups = set(moved.groups) if moved is not None else set()
    on_rows = moved.persons if moved is not None else frozenset()
    reach = reaches.reach(run.read, run.cert.plan.schools or (), came, was)
    if reach is None:
        return None  # a school no one was at: the gate's schools change (provisioner.core.safety)
    groups |= reach.groups
    wide, who = reach.wide, changed | came | reach.kin | on_rows
    counts = {**run.cert.plan.source_counts, **{t: run.read.count(t) for t in differing}}
    ctx = patch.context(
        run.read, who, groups=groups, every_group=bool(groups | wide), schools=reach.schools | reach.left
    )
    if ctx is None and len(who) > patch.person_limit(run.read):
        return None
    # Past the bound, a wide patch: everyone's rows. Its snapshot (~0.5 GB at Oslo size) is
    # referenced by _judged only, and goes once derived, as a full plan's does (the rows
    # as read went with it: a full plan after reads the source again).
    whole = ctx if ctx is not None else run.read.snapshot()
    judged = _judged(run, whole, who, came, reach.left, wide=ctx is None)
    if judged is None:
        return None
    del whole
    d, keys, ident = judged
    if keys & (d.frozen_persons | d.frozen_groups) or groups & d.frozen_groups:
        return None
    if ctx is None:
        release_freed()  # the snapshot's pages go back, as after a full plan's derivation
        counted = _counted_whole(run, d)
    else:
        counted = _counted(run, ctx, ident, joined, was, d, moved)
    if counted is None:
        return None
    d, active = counted
    got = _patch(run, d, keys, frozenset(groups) | wide, counts, active, wide=ctx is None)
    if got is None:
        return None
    held = {k: d.state.groups[k] for k in sorted(groups | wide) if k in d.state.groups}
    return replace(
        got,
        groups=held,
        prints=prints,
        group_prints=moved.prints if moved is not None else None,
        affiliation_prints=affiliated.prints if affiliated is not None else None,
    )


def _identity_scoped(cfg: Config) -> bool:
    """Whether no target has its own scope or extra groups: level and owner-wide groups are
    made of persons a patch of joiners, movers or memberships does not see."""
    return all(Scope.of(t).is_identity for t in cfg.enabled_targets().values())


def _persons(run: _Inputs) -> patch.ChangedPersons | None:
    """The persons whose row changed, or who came, by the fingerprints kept; None when there
    are none kept, or none, or more than a patch takes."""
    before = run.store.certificates.prints(run.cert.source)
    if before is None:
        return None
    found = patch.changed_persons(before, run.read.person_rows(), patch.person_limit(run.read))
    return found if found is not None and (found.changed or found.joined) else None


def _counted_whole(run: _Inputs, d: Derivation) -> tuple[Derivation, int] | None:
    """A wide patch's derivation (of everyone) and the active count, or None when it did not
    freeze whom the certified plan's run froze (those persons' changes are a full plan's)."""
    if run.store.certificates.frozen(run.cert.source) != (d.frozen_persons, d.frozen_groups):
        return None
    return d, local_runs.sis_count(d.state.persons, d.bridged, d.frozen_persons)


def _counted(
    run: _Inputs,
    ctx: SourceSnapshot,
    ident: IdentityView,
    joined: frozenset[str],
    was: Mapping[str, tuple[tuple[Any, ...], tuple[Any, ...]]],
    d: Derivation,
    moved: memberships.ChangedGroups | None,
) -> tuple[Derivation, int] | None:
    """A context's derivation with the persons and groups the last full run froze standing in
    (when memberships changed), and the active count (or bridged, or frozen: the gate's)
    by difference: the context derived again as it was before the joiners came and the
    movers' rows changed (``_then``). None when a data error came or went with them (the
    certified plan's errors would not be the full plan's)."""
    # Of the context as derived (before the frozen persons of the whole owner stand in
    # below). A patch of names or memberships brings no one and takes no one away.
    delta = 0
    if joined or was:
        then = derive(_then(ctx, joined, was), run.as_of, ident, run.cfg.usernames, run.cfg.lifecycle)
        if set(then.state.errors) != set(d.state.errors):
            return None
        now = local_runs.sis_count(d.state.persons, d.bridged, d.frozen_persons)
        delta = now - local_runs.sis_count(then.state.persons, then.bridged, then.frozen_persons)
    if moved is not None:
        frozen_p, frozen_g = moved.prints.frozen_persons, moved.prints.frozen_groups
        state = replace(d.state, groups={k: g for k, g in d.state.groups.items() if k not in frozen_g})
        d = replace(d, state=state, frozen_persons=frozen_p, frozen_groups=frozen_g)
    return d, run.cert.plan.active_persons + delta


def _only_joined(run: _Inputs, differing: set[str], joined: frozenset[str]) -> bool:
    """Whether guardianships, if they changed, changed by rows of joiners only (enrollments'
    and employments' changes are any person's: _changed_affiliations)."""
    for table in differing & (_JOINER_ROWS.keys() - _AFFILIATED):
        was = run.read.digest_without(table, _JOINER_ROWS[table], joined) if joined else None
        if was is None or was != run.cert.source.get(table):
            return False  # a leaver, a move between schools, a new guardian of a pupil there was...
    return True


def _then(
    ctx: SourceSnapshot, joined: frozenset[str], was: Mapping[str, tuple[tuple[Any, ...], tuple[Any, ...]]]
) -> SourceSnapshot:
    """The context as it was before the joiners came and the movers' rows changed: none of
    the joiners' rows, the movers' rows as they were (``was``)."""
    movers = was.keys()

    def theirs(*ids: str) -> bool:
        return any(i in joined for i in ids)

    return replace(
        ctx,
        persons=tuple(p for p in ctx.persons if p.person_id not in joined),
        enrollments=tuple(
            e for e in ctx.enrollments if e.person_id not in joined and e.person_id not in movers
        )
        + tuple(e for p in sorted(movers) for e in was[p][0]),
        employments=tuple(
            e for e in ctx.employments if e.person_id not in joined and e.person_id not in movers
        )
        + tuple(e for p in sorted(movers) for e in was[p][1]),
        guardianships=tuple(g for g in ctx.guardianships if not theirs(g.guardian_id, g.student_id)),
        memberships=tuple(m for m in ctx.memberships if m.person_id not in joined),
    )


def _judged(
    run: _Inputs,
    ctx: SourceSnapshot,
    changed: Iterable[str],
    came: frozenset[str],
    left: set[str],
    *,
    wide: bool,
) -> tuple[Derivation, set[str], IdentityView] | None:
    """The context derived, and the changed persons' canonical ids; None when the certified
    plan had a data error about anyone in it (a NIN another row holds among them may
    freeze them for a reason the context does not show), or deriving it reports one the
    certified plan did not have (a context that lacked a row), or it finds an alias, or
    issues a username a full plan would not issue alike (see _issues), or a school movers
    were at (``left``) has no one left (the gate's schools change). Also the historic base
    it was derived with.

    ``wide``: the context is every row (a wide patch), derived as a full plan derives it:
    its data errors must be the certified plan's (one that came or went freezes or thaws
    a person whose changes the patch does not make).
    """
    if not reaches.still_there(ctx, left):
        return None
    if wide:
        ident = run.store.identities.view()  # as a full plan derives
    else:
        records = {f"person:{p.person_id}" for p in ctx.persons}
        if any(e.record in records for e in run.cert.plan.errors):
            return None
        ident = _view(run, ctx, came)
    d = derive(ctx, run.as_of, ident, run.cfg.usernames, run.cfg.lifecycle)
    errors, had = set(d.state.errors), set(run.cert.plan.errors)
    if not (errors == had if wide else errors <= had) or d.new_aliases:
        return None
    keys = {ident.aliases.get(p, p) for p in changed}
    if d.state.new_usernames and not _issues(run, came):
        return None
    return d, keys, ident


def _view(run: _Inputs, ctx: SourceSnapshot, came: frozenset[str]) -> IdentityView:
    """The historic base for the context's persons: every username taken when persons joined
    or their affiliations changed (one may be issued: it must not be any ever issued)."""
    view = run.store.identities.view_of(
        (p.person_id for p in ctx.persons), (p.nin.strip() for p in ctx.persons if p.nin)
    )
    return replace(view, taken=run.store.identities.taken_lookup()) if came else view


def _issues(run: _Inputs, came: frozenset[str]) -> bool:
    """Whether the usernames the context issued are the ones a full plan issues.

    Usernames are issued in person-id order, each the first one free: alike when the
    context asks for every one a full plan asks for. It does when persons joined (or
    their affiliations changed) and the certified plan issued none still to be recorded
    (an identity it creates: a dry run, a core not applied): everyone active then holds
    one, and whoever is active only now is one of them or a guardian of one, whom the
    context holds.
    """
    core = run.cert.plan.target(CORE)
    return (
        bool(came)
        and core is not None
        and not any(c.kind == "identity" and c.op == Op.CREATE for c in core.changes)
    )


def _differing(a: Mapping[str, str], b: Mapping[str, str]) -> set[str]:
    """The tables (and local records) whose digests differ.

    A source may keep digests of more than its tables: where its read came from (a PIFU
    export's digest of its file, FINT's cursor per resource). Those differ whenever
    anything does, and say nothing the tables' digests do not: a new export with one
    pupil renamed differs in the persons table and in its file. A source that digests no
    table differs in nothing here, and is planned in full.
    """
    return {k for k in (a.keys() | b.keys()) & _DATA_DIGESTS if a.get(k) != b.get(k)}


def _patch(
    run: _Inputs,
    d: Derivation,
    keys: set[str],
    groups: frozenset[str],
    counts: Mapping[str, int],
    active: int,
    *,
    wide: bool = False,
) -> Patched | None:
    """Map, diff and splice the objects of persons ``keys`` and groups ``groups``, and the
    persons' identities, into the certified plan. ``counts``: the source's row counts;
    ``active``: the SIS persons active (the gate's count); ``wide``: ``d`` is everyone's
    (its data errors are the plan's, in a full plan's order), and a target whose earlier
    changes it would decode more than patch.WIDE_DECODED of is left to a full plan."""
    cfg, store, cert, as_of = run.cfg, run.store, run.cert, run.as_of
    state = d.state
    identities = store.identities.all(keys)
    school_names = {sid: s.short_name for sid, s in state.schools.items()}
    targets: list[TargetPlan] = []
    live: set[str] = set()
    config = config_digest(cfg)
    seal = nin_seal(store)  # as the full plan seals them
    for name, tcfg in cfg.enabled_targets().items():
        prev = cert.plan.target(name)
        if prev is None:
            return None
        kind = kind_of(tcfg.kind)
        seen = restrict(state, Scope.of(tcfg))
        ctx = MappingContext(cfg.owner, tcfg, as_of, seal, only=keys | groups)
        objs = [
            o
            for o in kind.map_state(seen, ctx)
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
            config=config,
        )
        most = patch.WIDE_DECODED if wide else None
        spliced = _spliced(prev, changes, keys, groups, tcfg.mode == "plan", most)
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
        # Persons went from no table, came only to schools that had some (reaches.schools_of), and
        # left none with no one (reaches.still_there): the schools with affiliations are the certified plan's.
        source_counts=dict(counts),
        active_persons=active,
        source_digests=run.digests,
        basis=PlanBasis.INCREMENTAL,
        schools_gone=(),
        config_digest=config_digest(cfg),
        errors=state.errors if wide else cert.plan.errors,
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
        new_usernames=d.state.new_usernames,  # a joiner's, when _issues allowed them
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
    prev: TargetPlan,
    changes: list[Change],
    keys: set[str],
    groups: frozenset[str],
    encode: bool,
    most: int | None = None,
) -> Sequence[Change] | None:
    """A target's changes patched (kept encoded when untouched); None when they cannot be,
    or when more than ``most`` of the earlier ones would be decoded. A live target's are
    packed, as a full plan's are, until the executor applies them (a wide patch's are
    tens of thousands)."""
    if _untouched(prev, changes, keys | groups):
        return prev.changes
    if isinstance(prev.changes, stored.StoredChanges):
        part = patch.splice_stored(prev.changes, changes, keys, groups, most)  # only the chunks with theirs
        if part is not None:
            return part if encode else stored.pack(part.stream())
    if most is not None and len(prev.changes) > most:
        return None
    whole = prev.changes.decoded() if isinstance(prev.changes, stored.CountedChanges) else prev.changes
    spliced = patch.splice_target(whole, changes, keys, groups)
    if spliced is None:
        return None
    return stored.encode(spliced) if encode else stored.pack(spliced)


def _untouched(prev: TargetPlan, changes: list[Change], keys: set[str]) -> bool:
    """Nothing to change for these persons and groups, and nothing planned for them before: read
    from the stored changes' record, so a plan-only target's 100,000-odd are never decoded."""
    return not changes and isinstance(prev.changes, stored.StoredChanges) and not (prev.changes.keys & keys)
