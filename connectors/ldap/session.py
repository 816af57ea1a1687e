"""One LDAP session to the Feide catalog server: connect, TLS, bind, and typed errors.

Owns the ldap3 connection of the live Feide connector and of ``bas feide check``:
``ldaps://`` or ``ldap://`` upgraded with StartTLS (never in clear), certificates checked
against ``ca_file`` (or the system CAs), a simple bind. Every operation goes through
``LdapSession.run``, which turns what can go wrong into the connector's typed errors:

- the server cannot be reached, drops the connection, or is busy / unavailable /
  over a limit: ``TransientError`` (the connection is dropped and reopened on the next
  call; after ``max_reconnects`` failed reconnections in a row: ``FatalError``, so a
  run does not spend hours retrying a server that is down);
- invalid credentials, insufficient access, TLS or certificate failures, a protocol
  error: ``FatalError``;
- anything the server refuses for one entry (schema, syntax, constraint, naming, an
  entry in the way): ``RejectedError`` naming the entry. Callers handle the codes that
  mean success for them (``entryAlreadyExists`` on a create, ``noSuchObject`` on a
  delete) before that, through ``RESULT_*`` constants.

Server messages are passed through ``mask_text`` (a value could hold a NIN); the
password is never put in a message.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Callable
from typing import Any

from ldap3 import NONE, Connection, Server, Tls
from ldap3.core import exceptions as lx

from connectors.base import ConnectorError, FatalError, RejectedError, TransientError
from provisioner.core.nin import mask_text

RESULT_SUCCESS = 0
RESULT_NO_SUCH_OBJECT = 32
RESULT_ALREADY_EXISTS = 68
RESULT_NOT_ALLOWED_ON_NON_LEAF = 66

# Worth retrying: operationsError (OpenLDAP's internal hiccups), timeLimitExceeded,
# adminLimitExceeded, busy, unavailable, unwillingToPerform is *not* here (read-only
# database or a refused operation: it will not change by retrying), other (80).
_TRANSIENT = {1, 3, 11, 51, 52, 80}
# The target cannot be used: protocolError, authMethodNotSupported, strongerAuthRequired,
# confidentialityRequired, inappropriateAuthentication, invalidCredentials,
# insufficientAccessRights.
_FATAL = {2, 7, 8, 13, 48, 49, 50}


def classify(result: dict[str, Any], what: str) -> ConnectorError:
    """The typed error for a failed LDAP result; ``what`` names the operation and entry."""
    code = result.get("result")
    desc = result.get("description") or "error"
    msg = mask_text(str(result.get("message") or "").strip())
    text = f"feide: {what}: {desc} ({code}){': ' + msg if msg else ''}"
    if code in _TRANSIENT:
        return TransientError(text)
    if code in _FATAL:
        return FatalError(text)
    return RejectedError(text)


class LdapSession:
    """A lazily (re)opened, bound ldap3 connection with typed errors."""

    def __init__(
        self,
        url: str,
        bind_dn: str | None,
        password: str | None,
        *,
        ca_file: str | None = None,
        start_tls: bool = False,
        timeout: float = 30.0,
        max_reconnects: int = 10,
    ) -> None:
        self.url = url
        self.bind_dn = bind_dn
        self._password = password
        self.ca_file = ca_file
        self.start_tls = start_tls
        self.timeout = timeout
        self.max_reconnects = max_reconnects
        self._conn: Connection | None = None
        self._failed_opens = 0  # failed (re)connections since the last success

    def __repr__(self) -> str:  # never show the password
        return f"LdapSession({self.url!r}, bind_dn={self.bind_dn!r})"

    def _server(self) -> Server:
        tls = None
        if self.url.lower().startswith("ldaps://") or self.start_tls:
            tls = Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=self.ca_file,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        # get_info=NONE: no schema read at connect; values come back as the server sent them.
        return Server(self.url, get_info=NONE, tls=tls, connect_timeout=self.timeout)

    def open(self) -> Connection:
        """The bound connection, opened (TLS, bind) when there is none."""
        if self._conn is not None:
            return self._conn
        if not self.url.lower().startswith("ldaps://") and not self.start_tls:
            raise FatalError(f"feide: {self.url} is neither ldaps:// nor StartTLS; refusing to talk in clear")
        if self._failed_opens >= self.max_reconnects:
            raise FatalError(
                f"feide: {self.url} unreachable: {self._failed_opens} connection attempts failed in a row"
            )
        conn = Connection(
            self._server(),
            user=self.bind_dn,
            password=self._password,
            receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 packs it as an integer
            raise_exceptions=False,
            auto_referrals=False,
        )
        try:
            conn.open()
            if self.start_tls and not conn.start_tls():
                raise FatalError(f"feide: StartTLS with {self.url} failed: {conn.result.get('description')}")
            if not conn.bind():
                err = classify(conn.result, f"bind to {self.url} as {self.bind_dn or 'anonymous'}")
                raise FatalError(str(err)) if not isinstance(err, TransientError) else err
        except (lx.LDAPStartTLSError, lx.LDAPCertificateError, lx.LDAPSSLConfigurationError) as exc:
            _close_quietly(conn)
            raise FatalError(f"feide: TLS with {self.url} failed: {exc}") from exc
        except lx.LDAPCommunicationError as exc:
            _close_quietly(conn)
            self._failed_opens += 1
            if _is_tls_failure(exc):  # a certificate the CA file does not vouch for: config, not luck
                raise FatalError(f"feide: TLS with {self.url} failed: {exc}") from exc
            raise TransientError(f"feide: cannot reach {self.url}: {exc}") from exc
        except ConnectorError:
            _close_quietly(conn)
            raise
        self._failed_opens = 0
        self._conn = conn
        return conn

    def run(self, what: str, op: Callable[[Connection], Any]) -> dict[str, Any]:
        """Run one operation (``op`` calls ldap3 on the connection); return its result dict.

        Communication failures drop the connection and raise TransientError; result codes
        are left to the caller (see ``check`` and ``classify``).
        """
        conn = self.open()
        try:
            op(conn)
        except (lx.LDAPCommunicationError, lx.LDAPResponseTimeoutError, OSError) as exc:
            self.drop()
            raise TransientError(f"feide: {what}: connection to {self.url} lost: {exc}") from exc
        except (lx.LDAPInvalidDnError, lx.LDAPAttributeError, lx.LDAPObjectClassError) as exc:
            raise RejectedError(f"feide: {what}: refused by ldap3 before sending: {exc}") from exc
        result = dict(conn.result or {})
        if result.get("result") in (51, 52):  # busy / unavailable: start afresh next time
            self.drop()
        return result

    def check(self, result: dict[str, Any], what: str) -> dict[str, Any]:
        """``result`` when it is a success; else raise its typed error."""
        if result.get("result") == RESULT_SUCCESS:
            return result
        raise classify(result, what)

    def entries(self, conn: Connection) -> list[dict[str, Any]]:
        """The entries of the last search on ``conn`` (dn and raw attributes)."""
        return [r for r in (conn.response or []) if r.get("type") == "searchResEntry"]

    def drop(self) -> None:
        """Forget the connection (closed quietly); the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    def close(self) -> None:
        """Unbind and close; safe to call twice."""
        self.drop()


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # closing a broken socket may fail; nothing to do about it
        conn.unbind()


def _is_tls_failure(exc: Exception) -> bool:
    text = str(exc).lower()
    return "certificate" in text or "ssl" in text or "tls" in text
