"""The nightly comparison of a patch with the full plan (provisioner.run.patch_check.check).

It compares every change of both plans, in order, and holds at most a stored chunk of
each decoded at a time: decoding both plans' pending AD and Microsoft 365 changes whole
took an Oslo-size nightly run's peak from ~1.0 to ~2.1 GB.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import pytest

from provisioner.core import stored
from provisioner.core.plan import Change, Op, Plan, TargetPlan
from provisioner.run import patch_check
from provisioner.state.store import StateStore

CHANGES = tuple(Change("ad", Op.CREATE, "person", f"P{i:05d}", "active in SIS") for i in range(2_500))


def _plan(changes: tuple[Change, ...], encoded: bool, run_id: str = "r1") -> Plan:
    held = stored.encode(changes) if encoded else changes
    return Plan(run_id, "2026-12-04T00:00:00+00:00", "2026-12-04", {}, (TargetPlan("ad", held, 0, True),))


def _other(i: int) -> tuple[Change, ...]:
    out = list(CHANGES)
    out[i] = dataclasses.replace(out[i], reason="another reason")
    return tuple(out)


@pytest.mark.parametrize(
    ("patched", "full", "same"),
    [
        (CHANGES, CHANGES, True),
        (_other(1_500), CHANGES, False),  # one reason, in the second of three chunks
        (_other(2_499), CHANGES, False),  # the last change
        (CHANGES[:-1], CHANGES, False),  # one change fewer
        (CHANGES[::-1], CHANGES, False),  # the same changes, in another order
    ],
)
@pytest.mark.parametrize("encoded", [(True, True), (True, False), (False, True), (False, False)])
def test_check_compares_every_change_in_order(
    tmp_path: Path, patched: tuple, full: tuple, same: bool, encoded: tuple[bool, bool]
) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert patch_check.check(store, _plan(patched, encoded[0]), _plan(full, encoded[1], "r2")) is same
    finally:
        store.close()


def test_check_decodes_no_stored_changes_whole(tmp_path: Path) -> None:
    patched, full = _plan(CHANGES, True), _plan(CHANGES, True, "r2")
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert patch_check.check(store, patched, full)
    finally:
        store.close()
    for plan in (patched, full):
        changes = plan.targets[0].changes
        assert isinstance(changes, stored.StoredChanges) and len(changes.chunks) == 3
        assert changes._decoded is None  # nothing kept decoded


def test_stream_gives_every_change_once_in_order() -> None:
    held = stored.encode(CHANGES)
    assert tuple(held.stream()) == CHANGES
    assert held._decoded is None
    kept = stored.encode(CHANGES, keep=True)
    assert tuple(kept.stream()) == CHANGES


def test_stream_raises_when_the_chunks_hold_fewer_changes_than_recorded(tmp_path: Path) -> None:
    """A chunk that decodes short (a damaged store) is an error, as decoding the whole is:
    the check must not compare only as far as the shorter stream and call them the same."""
    short = stored.encode(CHANGES[:-1])
    held = stored.StoredChanges(
        short.chunks, len(CHANGES), short.op_counts, short.destructive, short.member_removals
    )
    with pytest.raises(ValueError, match=f"hold {len(CHANGES) - 1} changes, not the {len(CHANGES)} recorded"):
        tuple(held.stream())
    assert held.head(3) == CHANGES[:3]  # the first few need only the first chunk
    patched = Plan("r1", "2026-12-04T00:00:00+00:00", "2026-12-04", {}, (TargetPlan("ad", held, 0, True),))
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        # the nightly run goes on with its full plan: a difference, logged and kept
        assert patch_check.check(store, patched, _plan(CHANGES, True, "r2")) is False
        assert json.loads(store.meta.get(patch_check.CHECK_KEY) or "{}") == {"run_id": "r2", "same": False}
    finally:
        store.close()


def test_a_chunk_that_does_not_decompress_is_a_difference(tmp_path: Path) -> None:
    """A damaged stored chunk: the nightly run logs a difference and goes on with its full plan."""
    good = stored.encode(CHANGES)
    damaged = stored.StoredChanges(
        (good.chunks[0], b"not zlib", good.chunks[2]),
        good.size,
        good.op_counts,
        good.destructive,
        good.member_removals,
    )
    with pytest.raises(ValueError, match="does not decompress"):
        damaged.decoded()
    patched = Plan("r1", "2026-12-04T00:00:00+00:00", "2026-12-04", {}, (TargetPlan("ad", damaged, 0, True),))
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert patch_check.check(store, patched, _plan(CHANGES, True, "r2")) is False
    finally:
        store.close()


def _rechunked(changes: tuple[Change, ...], cut: int) -> stored.StoredChanges:
    """The changes stored cut elsewhere than ``encode`` cuts them (as a patch's spliced chunks are)."""
    head, tail = stored.encode(changes[:cut]), stored.encode(changes[cut:])
    whole = stored.encode(changes)
    return stored.StoredChanges(
        head.chunks + tail.chunks, whole.size, whole.op_counts, whole.destructive, whole.member_removals
    )


@pytest.mark.parametrize("cut", [1, 700, 1_000, 2_499])
def test_stored_plans_of_the_same_text_are_compared_without_decoding(
    tmp_path: Path, cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal text is the same changes, whatever the chunking: nothing is decoded (an
    Oslo-size nightly run spent 10.8 s decoding both plans' pending changes)."""
    patched = Plan(
        "r1",
        "2026-12-04T00:00:00+00:00",
        "2026-12-04",
        {},
        (TargetPlan("ad", _rechunked(CHANGES, cut), 0, True),),
    )
    assert b"".join(patched.targets[0].changes.text()) == b"".join(stored.encode(CHANGES).text())

    def no_decoding(chunk: bytes) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(stored, "_decode", no_decoding)
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert patch_check.check(store, patched, _plan(CHANGES, True, "r2")) is True
    finally:
        store.close()


def test_other_text_of_the_same_changes_is_decoded_and_found_the_same(tmp_path: Path) -> None:
    """Text that differs (here: an encoding with spaces, as another version might write)
    is not taken as a difference: the changes are decoded and compared."""
    good = stored.encode(CHANGES)
    spaced = tuple(
        zlib.compress(json.dumps([c.to_json() for c in CHANGES[i : i + 1_000]], indent=1).encode())
        for i in range(0, len(CHANGES), 1_000)
    )
    held = stored.StoredChanges(spaced, good.size, good.op_counts, good.destructive, good.member_removals)
    assert b"".join(held.text()) != b"".join(good.text())
    patched = Plan("r1", "2026-12-04T00:00:00+00:00", "2026-12-04", {}, (TargetPlan("ad", held, 0, True),))
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert patch_check.check(store, patched, _plan(CHANGES, True, "r2")) is True
        assert patch_check.check(store, patched, _plan(_other(2_000), True, "r3")) is False
    finally:
        store.close()


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ([b"abc", b"def"], [b"abcdef"], True),
        ([b"a", b"", b"bc"], [b"ab", b"c"], True),  # an empty piece is not the end
        ([], [], True),
        ([b"abc"], [b"abcd"], False),  # one ends first
        ([b"abcd"], [b"abc"], False),
        ([b"ab", b"x"], [b"a", b"by"], False),
        ([b""], [], True),
    ],
)
def test_same_bytes_joins_the_pieces(a: list[bytes], b: list[bytes], same: bool) -> None:
    assert patch_check._same_bytes(a, b) is same
