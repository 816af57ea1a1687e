"""The typed errors a connector or an exporter raises, and what the executor does with each.

- ``TransientError``: try again with backoff (target busy, throttled, connection lost);
- ``RejectedError``: this object is refused; record it, skip it, go on with the rest;
- ``FatalError``: stop this target now (bad credentials, target gone, disk full);
- ``PendingError``: no failure: the target cannot take the change *yet* (hybrid Microsoft
  365 waits for Entra Connect to sync a user from AD). The executor records it as pending,
  not as applied, so the next run plans it again; it counts as no error.

Their own module, below connectors.base and connectors.files, so that the file helpers an
exporter uses can raise them without importing the protocol that uses those helpers.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of the typed connector errors."""


class TransientError(ConnectorError):
    """Temporary failure: the same change may succeed if retried later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(ConnectorError):
    """The target refuses this object; skip it and record why."""


class FatalError(ConnectorError):
    """The target cannot be used at all this run."""


class PendingError(ConnectorError):
    """The target is not ready for this change yet (not an error): recorded as pending, retried next run."""
