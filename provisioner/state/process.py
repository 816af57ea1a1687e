"""Is a run lock's holder alive? Process identity on this host, robust to PID reuse.

A PID alone does not name a process for long: after a holder dies, another process
may get its PID, and a lock checked by PID alone would then be held forever. The
holder records its process start (boot id and start time from /proc) with the lock;
a live PID whose process started at another time is not the holder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as "<boot id>:<start time in clock ticks>" (Linux /proc).

    Two processes that share a PID never share this. None where /proc cannot tell.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None  # field 22, starttime


def holder_alive(cur: Mapping[Any, Any] | None, known: str | None) -> bool:
    """Is the process a lock row names (on this host) still the one that took the lock?"""
    if cur is None or not pid_alive(cur["pid"]):
        return False
    try:
        rec = json.loads(known) if known else {}
    except ValueError:
        rec = {}
    if rec.get("holder") != cur["holder"] or rec.get("pid") != cur["pid"] or not rec.get("start"):
        return True  # no start time on record (an older BAS, or no /proc): the PID is all we have
    # The PID is alive: it is the holder only if that process started when the holder did.
    return process_start(cur["pid"]) == rec["start"]


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
