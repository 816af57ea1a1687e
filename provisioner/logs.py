"""Structured logging (structlog): console or JSON lines, NINs masked, passwords dropped.

Every event passes ``_scrub``: any stand-alone 11-digit number in any string value is
masked to its first six digits, and keys that could hold a secret are removed, so no
caller can leak a NIN or a password into the journal by accident.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

from provisioner.core.nin import mask_text

_SECRET_KEYS = ("password", "passwd", "secret", "unicodepwd", "userpassword", "token", "credential")


def _scrub_value(v: Any) -> Any:
    if isinstance(v, str):
        return mask_text(v)
    if isinstance(v, dict):
        return {k: _scrub_value(x) for k, x in v.items() if not _is_secret(k)}
    if isinstance(v, list | tuple):
        return [_scrub_value(x) for x in v]
    return v


def _is_secret(key: Any) -> bool:
    k = str(key).lower()
    return any(s in k for s in _SECRET_KEYS)


def _scrub(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    return {k: _scrub_value(v) for k, v in event.items() if not _is_secret(k)}


@dataclass(frozen=True)
class LogSettings:
    """How a process logs: handed to the processes it starts, so they log the same way."""

    level: str = "info"
    format: str = "console"


def configure(level: str = "info", fmt: str = "console", stream: Any = None) -> LogSettings:
    """Set up structlog for the process (idempotent); returns the settings, to pass on to children."""
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    return LogSettings(level, fmt)
