"""What both Feide writers (the live LDAP connector and the LDIF exporter) take from a plan."""

from __future__ import annotations

from connectors.errors import RejectedError
from provisioner.core.plan import Change, Op

KINDS = ("org", "orgunit", "person")  # in the order their entries nest
OPS = (Op.CREATE, Op.UPDATE, Op.MOVE, Op.DELETE)


def refuse_unsupported(change: Change, writes: str) -> None:
    """RejectedError for a change no Feide writer makes; ``writes`` says what the writer does."""
    if change.kind not in KINDS:
        raise RejectedError(f"feide: unknown object kind {change.kind!r} ({change.kind}:{change.key})")
    if change.op not in OPS:
        raise RejectedError(
            f"feide: operation {change.op.value!r} is not supported ({change.kind}:{change.key}); {writes}"
        )
