"""The admin's edits: local persons added, changed, ended or imported; persons locked and unlocked.

Each edit is checked whole before anything is written (provisioner/core/local.py has
the rules) and written with its audit row (provisioner/state/local.py). Nothing here
touches a target: the next run plans what the edit means, and the executor applies it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.config import Config, ConfigError
from provisioner.core.local import (
    LOCAL_PREFIX,
    LocalPerson,
    changed_values,
    check_values,
)
from provisioner.core.local_csv import read_local_csv
from provisioner.core.locks import ALL_TARGETS, Lock
from provisioner.kinds import kind_of
from provisioner.state.store import StateStore


class EditError(ValueError):
    """An edit refused; the message says why (nothing was written)."""


def find_local(store: StateStore, who: str) -> LocalPerson | None:
    """A local person by ``local:<n>``, ``<n>`` or the admin's ref."""
    m = re.fullmatch(rf"(?:{re.escape(LOCAL_PREFIX)})?(\d+)", who.strip())
    if m:
        found = store.local.get(int(m.group(1)))
        if found is not None:
            return found
    return store.local.by_ref(who.strip())


def add(
    store: StateStore, values: Mapping[str, Any], today: str, by: str, note: str | None = None
) -> LocalPerson:
    """Add a local person; EditError when the record or its end date is not acceptable."""
    values = {"start_date": today, "protected": False, **values}
    why = check_values(values, today)
    if why is None and values.get("ref") and store.local.by_ref(values["ref"]) is not None:
        why = f"ref {values['ref']!r} is taken by another local person"
    if why:
        raise EditError(why)
    return store.local.add(values, by, note)


def change(
    store: StateStore,
    lp: LocalPerson,
    values: Mapping[str, Any],
    today: str,
    by: str,
    action: str = "set",
    note: str | None = None,
) -> dict[str, Any]:
    """Change a local person; the fields changed ({} when none); EditError when refused."""
    new = changed_values(lp, values)
    if not new:
        return {}
    why = check_values(new, today, lp)
    if why:
        raise EditError(f"{lp.person_id}: {why}")
    store.local.change(lp.local_id, new, by, action, note)
    return new


def end(store: StateStore, lp: LocalPerson, day: str, today: str, by: str) -> dict[str, Any]:
    """End a local person on ``day`` (their accounts follow the lifecycle after it)."""
    if day > lp.end_date:
        raise EditError(f"{lp.person_id} ends on {lp.end_date} already; `bas local set --end` extends")
    return change(store, lp, {"end_date": day}, today, by, action="end")


@dataclass(frozen=True)
class ImportLine:
    """What importing one row does: add, set or nothing."""

    line: int
    action: str  # add | set | same
    subject: str  # local:<n>, or "new" for an add
    ref: str
    changed: tuple[str, ...] = ()


def import_csv(
    store: StateStore, path: str | Path, today: str, by: str, *, dry_run: bool
) -> list[ImportLine]:
    """Apply the admin's CSV (adds and changes by ref); every row is checked before any is written.

    EditError lists every refused row (nothing written then).
    """
    try:
        rows = read_local_csv(path)
    except ValueError as exc:
        raise EditError(str(exc)) from None
    plan: list[tuple[ImportLine, LocalPerson | None, dict[str, Any]]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, values in rows:
        ref = values["ref"]
        if ref in seen:
            problems.append(f"{path}:{line}: ref {ref!r} is on line {seen[ref]} too")
            continue
        seen[ref] = line
        known = store.local.by_ref(ref)
        if known is None:
            full = {"start_date": today, "protected": False, **values}
            why = check_values(full, today)
            item = ImportLine(line, "add", "new", ref)
            plan.append((item, None, full))
        else:
            new = changed_values(known, values)
            why = check_values(new, today, known) if new else None
            item = ImportLine(line, "set" if new else "same", known.person_id, ref, tuple(sorted(new)))
            plan.append((item, known, new))
        if why:
            problems.append(f"{path}:{line}: {why}")
    if problems:
        raise EditError("; ".join(problems) + "; nothing was imported")
    if dry_run:
        return [item for item, _, _ in plan]
    note = f"import {Path(path).name}"
    done = []
    for item, known, values in plan:
        if known is None:
            added = store.local.add(values, by, note)
            done.append(ImportLine(item.line, "add", added.person_id, item.ref))
        else:
            if values:
                store.local.change(known.local_id, values, by, "set", note)
            done.append(item)
    return done


# -- locks ------------------------------------------------------------------------------


def resolve_person(store: StateStore, who: str) -> str | None:
    """The canonical person id of a username, NIN, SIS id or local person (as `bas person show`)."""
    ids = store.identities.resolve(who)
    if ids:
        ident = store.identities.record(ids)
        return str(ident["person_id"]) if ident else sorted(ids)[0]
    lp = find_local(store, who)
    return lp.person_id if lp is not None else None


def disabling_targets(cfg: Config) -> tuple[list[str], list[str]]:
    """(targets that can disable, targets that cannot) among the enabled ones."""
    can: list[str] = []
    cannot: list[str] = []
    for name, tcfg in cfg.enabled_targets().items():
        (can if kind_of(tcfg.kind).policy(tcfg).disable_first else cannot).append(name)
    return can, cannot


def lock(
    cfg: Config,
    store: StateStore,
    person_id: str,
    reason: str,
    until: str | None,
    targets: tuple[str, ...],
    today: str,
    by: str,
) -> tuple[list[Lock], list[str]]:
    """Lock a person (every target that can disable, or these); (locks made, targets left as they are)."""
    if not reason.strip():
        raise EditError("a lock needs a reason (--reason TEXT)")
    if until is not None and until < today:
        raise EditError(f"--until {until} is in the past")
    can, cannot = disabling_targets(cfg)
    unknown = [t for t in targets if t not in can and t not in cannot]
    if unknown:
        raise EditError(f"no enabled target {', '.join(unknown)} (targets: {', '.join(can + cannot)})")
    left = [t for t in targets if t in cannot] if targets else cannot
    chosen = [t for t in targets if t in can] if targets else [ALL_TARGETS]
    if not chosen or (not targets and not can):
        raise EditError(f"{', '.join(left) or 'no target'} cannot disable an account: nothing to lock")
    return store.local.lock(person_id, chosen, reason.strip(), until, by), left


def unlock(cfg: Config, store: StateStore, person_id: str, target: str | None, by: str) -> list[Lock]:
    """Release a person's locks (all, or one target's); the released ones (none: not locked)."""
    can, cannot = disabling_targets(cfg)
    if target is not None and target not in can + cannot:
        raise ConfigError(f"no enabled target {target!r}")
    return store.local.unlock(person_id, target, by, others=can)


def describe_local(lp: LocalPerson) -> str:
    """One line about a local person (no NIN)."""
    name = " ".join(x for x in (lp.given_name, lp.middle_name, lp.family_name) if x)
    flags = " protected identity" if lp.protected else ""
    ref = f" ref {lp.ref}" if lp.ref else ""
    return f"{lp.person_id} {name}: {lp.role} at {lp.school_id} {lp.start_date}..{lp.end_date}{flags}{ref}"
