"""How Python's cyclic garbage collector runs while a run is in flight.

A run builds millions of long-lived, acyclic objects (snapshot rows, desired state,
target objects, changes). With the default thresholds a young-generation collection
runs every 700 allocations and the older generations are walked again and again as the
heap grows: at Oslo size that was about a quarter of a first run's time. During a run
young collections run every 200,000 allocations instead, so what little cyclic garbage
there is (tracebacks of rejected changes, database sessions) is still collected, only
far less often. Measured on the Oslo-size first run (benchmarks/bench_pipeline.py):
84 s with the default thresholds, 71 s with these, 64 s with the collector off.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress

RUN_THRESHOLDS = (200_000, 20, 10)


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection for a moment of a run; what it made is then left out of them.

    For a read of the whole source and a patch of the plan: a million and a half
    driver rows, none in a cycle, that collections would walk several times over (a
    third of a patched run at Oslo size) for nothing to collect. Merely pausing would
    not do: the first collection after walks them all. So they are frozen (gc.freeze:
    they are still freed when no longer referenced, only never walked), until the run
    ends (``run_collector`` unfreezes).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


@contextmanager
def run_collector() -> Iterator[None]:
    """The collector's thresholds for a run; the previous ones back afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(*RUN_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()  # what ``paused`` froze is collected again as usual
        gc.set_threshold(*old)


def release_freed() -> None:
    """Give the pages the heap holds free back to the system (glibc's ``malloc_trim``).

    Planning frees the snapshot and the derivation, but the allocator keeps most of the
    pages they were in; the apply then runs beside the worker processes, whose memory
    adds to this one's. At Oslo size this gave back about 100 MB before the apply. Where
    the C library has no ``malloc_trim`` (musl, macOS) nothing happens.
    """
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
