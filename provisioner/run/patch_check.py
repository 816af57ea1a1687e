"""The nightly comparison of a patch with the full plan of the same inputs.

The nightly run (``bas sync --full``) plans in full and, where the certificate allows
one, makes the patch too (provisioner.run.incremental). This module compares the two:
every target's count, population and mode, the errors and counts, then every change in
order: as text where both plans hold them stored, else decoded a chunk at a time. The
full plan is used either way; a difference is logged and kept in the store for the
daemon, which counts it (``bas_patch_mismatches``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from operator import eq

import structlog

from provisioner.core import stored
from provisioner.core.plan import Change, Plan
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.run")

# meta key: how the last full run's own plan compared with the patch it could have used
CHECK_KEY = "patch_check"


def check(store: StateStore, patched_plan: Plan, full_plan: Plan) -> bool:
    """Compare a patch with the full plan of the same inputs (the nightly run makes both).

    The full plan is the one used either way. A difference is logged as an error and kept
    in the store for the daemon, which counts it (``bas_patch_mismatches``): it would be a
    bug in the patch, which the property tests are there to rule out. Stored changes that
    do not decompress, or decode to another count than recorded (a damaged certificate),
    are a difference too: the nightly run goes on with its full plan, which replaces them.
    """
    try:
        same = _shape(patched_plan) == _shape(full_plan) and all(
            _same_changes(a.changes, b.changes) for a, b in zip(patched_plan.targets, full_plan.targets)
        )
        broken = None
    except ValueError as e:  # a stored chunk that does not decompress, or another count than recorded
        same, broken = False, str(e)
    if not same:
        log.error(
            "the patched plan differs from the full plan of the same inputs: the full plan is used",
            run_id=full_plan.run_id,
            **({"error": broken} if broken else {}),
        )
    store.meta.set(CHECK_KEY, json.dumps({"run_id": full_plan.run_id, "same": same}))
    return same


def _shape(plan: Plan) -> tuple[object, ...]:
    """What a patch must get right besides the changes (``_same_changes``): every target's
    count of changes, population and mode, the errors and counts."""
    return (
        [(tp.target, len(tp.changes), tp.population, tp.dry_run) for tp in plan.targets],
        plan.errors,
        plan.active_persons,
        dict(plan.source_counts),
    )


def _same_changes(a: Sequence[Change], b: Sequence[Change]) -> bool:
    """The same changes in the same order (the caller compared their counts), compared a
    stored chunk at a time: decoding both plans' pending AD and Microsoft 365 changes whole
    (~290,000 each at Oslo size) took the nightly run's peak to ~2 GB.

    Two stored plans are first compared as text (``StoredChanges.text``): equal text is
    the same changes, and decoding both took 10.8 s of an Oslo-size nightly run. Text that
    differs (another chunking is fine; an older version's encoding, or a real difference,
    is not) is decoded and compared change by change, which decides.
    """
    if (
        isinstance(a, stored.StoredChanges)
        and isinstance(b, stored.StoredChanges)
        and _same_bytes(a.text(), b.text())
    ):
        return True
    return all(map(eq, _each(a), _each(b)))


def _same_bytes(a: Iterable[bytes], b: Iterable[bytes]) -> bool:
    """Whether two streams of byte pieces join to the same bytes, whatever their pieces."""
    ia, ib = (p for p in a if p), (p for p in b if p)  # an empty piece is not the end
    pa = pb = memoryview(b"")
    while True:
        if not pa:
            pa = memoryview(next(ia, b""))
        if not pb:
            pb = memoryview(next(ib, b""))
        if not pa or not pb:  # one is at its end: equal only if both are
            return not pa and not pb
        n = min(len(pa), len(pb))
        if pa[:n] != pb[:n]:
            return False
        pa, pb = pa[n:], pb[n:]


def _each(changes: Sequence[Change]) -> Iterator[Change]:
    return changes.stream() if isinstance(changes, stored.CountedChanges) else iter(changes)
