"""The one LDAP link: a lazily (re)connecting, TLS-only ldap3 connection with typed errors.

Used by the AD connector, the live Feide connector, ``bas feide check``, the probes and
the readers; owns how BAS talks LDAP, whatever it asks for:

- TLS always: ``ldaps://``, or ``ldap://`` upgraded with StartTLS before the bind; a
  link configured with neither refuses to connect (no bind, anonymous or not, ever goes
  out in clear: the catalogs hold NINs). Certificates are validated against
  ``ca_file`` (the system CAs without one), and against ``tls_server_name`` when the URL
  names the server by another name. ``set_password`` checks again that the open
  connection is encrypted before a password leaves.
- lazily (re)connecting: the connection is opened by the first call, dropped when it
  breaks (or the server says busy / unavailable) and reopened by the next call. A
  circuit breaker: after ``max_reconnects`` failed connection attempts in a row the link
  raises FatalError instead of TransientError, so a run does not spend hours retrying a
  server that is down.
- typed errors (connectors.base) through one result-code table (connectors.ldap.codes,
  with the ``dialect``'s overrides): a server that cannot be reached or drops the
  connection is transient; bad credentials, a TLS or certificate failure are fatal; a
  result code is mapped by the table. Every message is NIN-masked (server messages
  quote values) and names the target (``label``); the password is never in one.
- reads: entries by DN (AD's ``<GUID=...>`` DNs too), one-answer searches, paged
  searches (the simple paged results control, so a large subtree reads in pages under
  the server's size limit) and ranged reads of multi-valued attributes
  (``member;range=0-1499``...), because AD returns at most 1500 values of an attribute
  in one answer.

Every DN value a caller builds is escaped with ``provisioner.core.dn.escape`` and every
filter value with ``escape_filter`` below; GUIDs are checked against their pattern
before they go into a DN.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.core import exceptions as lx

from connectors.errors import FatalError, RejectedError, TransientError
from connectors.ldap import codes
from connectors.ldap.codes import NO_SUCH_OBJECT, SUCCESS, Dialect
from provisioner.core.nin import mask_error

TREE_DELETE = "1.2.840.113556.1.4.805"  # LDAP_SERVER_TREE_DELETE_OID
PAGED_RESULTS = "1.2.840.113556.1.4.319"
_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_RANGE_RE = re.compile(r";range=(\d+)-(\d+|\*)$", re.IGNORECASE)
_FILTER_ESCAPES = {"\\": "\\5c", "*": "\\2a", "(": "\\28", ")": "\\29", "\x00": "\\00"}

Entry = tuple[str, Mapping[str, list[bytes]]]  # (dn, raw attributes, case-insensitive keys)


@dataclass(frozen=True, slots=True)
class Reply:
    """A write's result: its code (success or one the caller accepted) and response controls."""

    code: int
    controls: Mapping[str, Any] = field(default_factory=dict)


def escape_filter(value: str) -> str:
    """A value escaped for an LDAP search filter (RFC 4515: ``\\ * ( )`` and NUL)."""
    return "".join(_FILTER_ESCAPES.get(c, c) for c in value)


def guid_text(raw: bytes) -> str:
    """objectGUID bytes (little-endian as AD stores them) as the usual dashed string."""
    return str(uuid.UUID(bytes_le=raw))


def guid_dn(guid: str) -> str:
    """The ``<GUID=...>`` DN that finds an AD object wherever it has moved."""
    g = guid.strip("{}").lower()
    if not _GUID_RE.match(g):
        raise RejectedError(f"not an objectGUID: {guid!r}")
    return f"<GUID={g}>"


def text(entry: Entry, attr: str) -> str | None:
    """The first value of an attribute as text (None when absent)."""
    vals = entry[1].get(attr)
    return vals[0].decode("utf-8") if vals else None


def texts(entry: Entry, attr: str) -> list[str]:
    """Every value of an attribute as text."""
    return [v.decode("utf-8") for v in entry[1].get(attr) or ()]


def decode(raw: Mapping[str, list[bytes]]) -> dict[str, list[str]]:
    """Raw attribute values as text (UTF-8; anything else is kept as escaped text)."""
    return {name: [v.decode("utf-8", "backslashreplace") for v in vals] for name, vals in raw.items()}


def parse_range(attr_name: str) -> tuple[int, int | None] | None:
    """(low, high) of a ranged attribute name like ``member;range=0-1499``; high None for ``*``."""
    m = _RANGE_RE.search(attr_name)
    if not m:
        return None
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


def ranged_chunk(raw: Mapping[str, Any], attr: str) -> tuple[list[bytes], int | None] | None:
    """The values of ``attr`` in one ranged answer and the range's upper end (None when it was the last).

    AD answers ``member;range=0-1499`` with up to 1500 values, then ``member;range=1500-*``
    for the last chunk; a server that returns the whole attribute unranged is the last
    chunk too. None when the attribute is not in the answer at all.
    """
    prefix = attr.lower()
    for name, values in raw.items():
        lname = name.lower()
        if lname == prefix:
            return list(values or ()), None
        if lname.startswith(prefix + ";range="):
            bounds = parse_range(name)
            if bounds is None:
                continue
            return list(values or ()), bounds[1]
    return None


class LdapLink:
    """One ldap3 connection, opened lazily and reopened after a drop (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        bind_dn: str | None,
        password: str | None,
        ca_file: str | None = None,
        start_tls: bool = False,
        tls_server_name: str | None = None,
        timeout: float = 30.0,
        page_size: int = 500,
        max_reconnects: int = 10,
        dialect: Dialect = Dialect.OPENLDAP,
        label: str = "ldap",
    ) -> None:
        self.url = url
        self.bind_dn = bind_dn
        self._password = password
        self.ca_file = ca_file
        self.start_tls = start_tls
        self.tls_server_name = tls_server_name
        self.timeout = timeout
        self.page_size = page_size
        self.max_reconnects = max_reconnects
        self.dialect = dialect
        self.label = label
        self._conn: ldap3.Connection | None = None
        self._failed_opens = 0  # failed connection attempts since the last success

    def __repr__(self) -> str:  # never the password
        return f"LdapLink({self.url!r}, bind_dn={self.bind_dn!r})"

    def _fail(self, kind: type[Exception], message: str) -> Exception:
        return kind(mask_error(f"{self.label}: {message}"))

    # -- connection -------------------------------------------------------------------

    def open(self) -> None:
        """Connect, secure and bind unless connected; typed errors on failure."""
        if self._conn is not None:
            return
        use_ssl = self.url.lower().startswith("ldaps://")
        if not use_ssl and not self.start_tls:
            raise self._fail(
                FatalError, f"{self.url} is neither ldaps:// nor StartTLS; refusing to bind in clear"
            )
        if self._failed_opens >= self.max_reconnects:
            raise self._fail(
                FatalError,
                f"{self.url} unreachable: {self._failed_opens} connection attempts failed in a row",
            )
        conn = self._connection(use_ssl)
        try:
            conn.open()
            if self.start_tls and not conn.start_tls():
                raise self._fail(
                    FatalError, f"StartTLS with {self.url} failed: {conn.result.get('description')}"
                )
            if not conn.bind():
                self._bind_failed(conn.result or {})
        except (lx.LDAPCertificateError, lx.LDAPSSLConfigurationError, lx.LDAPStartTLSError) as exc:
            _quiet_unbind(conn)
            raise self._fail(FatalError, f"TLS with {self.url} failed: {_short(exc)}") from exc
        except lx.LDAPCommunicationError as exc:
            _quiet_unbind(conn)
            if _is_tls_failure(exc):  # a certificate the CA file does not vouch for: config, not luck
                raise self._fail(FatalError, f"TLS with {self.url} failed: {_short(exc)}") from exc
            self._failed_opens += 1
            raise self._fail(
                TransientError, f"cannot reach {self.url}: cannot connect ({_short(exc)})"
            ) from exc
        except lx.LDAPException as exc:
            _quiet_unbind(conn)
            self._failed_opens += 1
            raise self._fail(TransientError, f"connection to {self.url} failed: {_short(exc)}") from exc
        except BaseException:
            _quiet_unbind(conn)
            raise
        self._failed_opens = 0
        self._conn = conn

    def _connection(self, use_ssl: bool) -> ldap3.Connection:
        tls = ldap3.Tls(
            ca_certs_file=self.ca_file,
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            valid_names=[self.tls_server_name] if self.tls_server_name else None,
        )
        # get_info=NONE: no schema read at connect; values come back as the server sent them.
        server = ldap3.Server(
            self.url, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE, connect_timeout=self.timeout
        )
        return ldap3.Connection(
            server,
            user=self.bind_dn,
            password=self._password,
            authentication=ldap3.SIMPLE if self.bind_dn else ldap3.ANONYMOUS,
            raise_exceptions=False,
            auto_referrals=False,
            auto_range=False,  # ranges are read here, by read_values
            return_empty_attributes=False,
            receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 packs it as an integer
        )

    def _bind_failed(self, res: Mapping[str, Any]) -> None:
        code = int(res.get("result") or 0)
        who = self.bind_dn or "anonymous"
        says = res.get("message") or ""
        msg = f"bind to {self.url} as {who} failed: {res.get('description')} ({code}) {says}"
        if codes.outcome(code, self.dialect)[0] is codes.Outcome.TRANSIENT:
            self._failed_opens += 1
            raise self._fail(TransientError, msg.strip())
        raise self._fail(FatalError, msg.strip())  # a refused bind is never one entry's problem

    @property
    def encrypted(self) -> bool:
        """True when the open connection runs over TLS (LDAPS or StartTLS)."""
        c = self._conn
        return bool(c is not None and (c.server.ssl or c.tls_started))

    def close(self) -> None:
        """Unbind and forget the connection; the next call reconnects. Safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _quiet_unbind(conn)

    def _call(self, what: str, op: Callable[[ldap3.Connection], Any]) -> dict[str, Any]:
        """Run one ldap3 operation; the raw result, ``entries`` added for a search."""
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            op(conn)
        except (lx.LDAPInvalidDnError, lx.LDAPAttributeError, lx.LDAPObjectClassError) as exc:
            raise self._fail(
                RejectedError, f"{what}: refused by ldap3 before sending: {_short(exc)}"
            ) from exc
        except (lx.LDAPException, OSError) as exc:
            # The socket is gone or stuck: drop it so the next call reconnects.
            self.close()
            raise self._fail(TransientError, f"{what}: connection to {self.url} lost: {_short(exc)}") from exc
        res = dict(conn.result or {})
        res["entries"] = conn.response
        return res

    def check(self, res: Mapping[str, Any], what: str, ok: Sequence[int] = ()) -> int:
        """The code of a result that is success or in ``ok``; else raise its typed error."""
        code = int(res.get("result") or SUCCESS)
        if code == SUCCESS or code in ok:
            return code
        if code in codes.RECONNECT:
            self.close()  # a server going down or out of step: start afresh next time
        server_says = str(res.get("message") or "").strip()
        msg = (
            f"{what}: {res.get('description') or 'error'} ({code}){': ' + server_says if server_says else ''}"
        )
        raise codes.error(code, self.dialect, mask_error(f"{self.label}: {msg}"))

    def _reply(self, res: Mapping[str, Any], what: str, ok: Sequence[int]) -> Reply:
        return Reply(self.check(res, what, ok), res.get("controls") or {})

    # -- writes -----------------------------------------------------------------------

    def add(
        self,
        dn: str,
        classes: Sequence[str],
        attrs: Mapping[str, Any],
        *,
        what: str | None = None,
        ok: Sequence[int] = (),
        controls: Sequence[Any] | None = None,
    ) -> Reply:
        """Add an entry (``classes`` empty when ``attrs`` holds objectClass)."""
        what = what or f"add {dn}"
        res = self._call(what, lambda c: c.add(dn, list(classes) or None, dict(attrs), controls=controls))
        return self._reply(res, what, ok)

    def modify(
        self,
        dn: str,
        changes: Mapping[str, Any],
        what: str,
        ok: Sequence[int] = (),
        controls: Sequence[Any] | None = None,
    ) -> Reply:
        """Modify an entry (ldap3's ``{attr: [(op, values)]}``)."""
        return self._reply(
            self._call(what, lambda c: c.modify(dn, dict(changes), controls=controls)), what, ok
        )

    def move(
        self,
        dn: str,
        rdn: str,
        new_superior: str | None,
        what: str,
        ok: Sequence[int] = (),
        controls: Sequence[Any] | None = None,
    ) -> Reply:
        """Rename and/or move an entry (modify_dn, the old RDN value deleted; no superior: rename only)."""
        res = self._call(
            what,
            lambda c: c.modify_dn(dn, rdn, delete_old_dn=True, new_superior=new_superior, controls=controls),
        )
        return self._reply(res, what, ok)

    def delete(self, dn: str, what: str, *, tree: bool = False, ok: Sequence[int] = ()) -> Reply:
        """Delete an entry (with its children when ``tree``: AD's tree delete control)."""
        controls = [(TREE_DELETE, True, None)] if tree else None
        return self._reply(self._call(what, lambda c: c.delete(dn, controls=controls)), what, ok)

    def set_password(self, dn: str, password: str, what: str) -> None:
        """Set AD's unicodePwd (the quoted password in UTF-16-LE); only ever over TLS."""
        self.open()
        if not self.encrypted:
            raise self._fail(FatalError, "refusing to send a password over a connection without TLS")
        value = f'"{password}"'.encode("utf-16-le")
        self.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [value])]}, what)

    # -- reads ------------------------------------------------------------------------

    def search(
        self,
        base: str,
        filt: str,
        attrs: Sequence[str],
        *,
        scope: str = ldap3.SUBTREE,
        what: str | None = None,
        missing_ok: bool = False,
        controls: Sequence[Any] | None = None,
    ) -> list[Entry]:
        """Entries under ``base`` (one answer, no paging); [] for a missing base when ``missing_ok``."""
        what = what or f"search {base}"
        res = self._call(
            what, lambda c: c.search(base, filt, scope, attributes=list(attrs), controls=controls)
        )
        code = self.check(res, what, ok=(NO_SUCH_OBJECT,) if missing_ok else ())
        if code == NO_SUCH_OBJECT:
            return []
        return _entries(res)

    def read(self, dn: str, attrs: Sequence[str], what: str | None = None) -> Entry | None:
        """One entry by DN (a ``<GUID=...>`` DN too); None when it does not exist."""
        found = self.search(
            dn, "(objectClass=*)", attrs, scope=ldap3.BASE, what=what or f"read {dn}", missing_ok=True
        )
        return found[0] if found else None

    def paged(
        self,
        base: str,
        filt: str,
        attrs: Sequence[str],
        what: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entry]:
        """Every entry under ``base``, read in pages of ``page_size`` (simple paged results)."""
        what = what or f"paged search {base}"
        size = page_size or self.page_size
        cookie: bytes | None = None
        while True:

            def page(c: ldap3.Connection, ck: bytes | None = cookie) -> Any:
                return c.search(
                    base, filt, ldap3.SUBTREE, attributes=list(attrs), paged_size=size, paged_cookie=ck
                )

            res = self._call(what, page)
            self.check(res, what)
            yield from _entries(res)
            ctrl = (res.get("controls") or {}).get(PAGED_RESULTS) or {}
            cookie = (ctrl.get("value") or {}).get("cookie")
            if not cookie:
                return

    def read_values(self, dn: str, attr: str, step: int) -> list[bytes]:
        """Every value of a multi-valued attribute, read ``step`` values at a time (range retrieval)."""
        out: list[bytes] = []
        low = 0
        while True:
            want = f"{attr};range={low}-{low + step - 1}"
            entry = self.read(dn, [want], what=f"read {attr} of {dn}")
            if entry is None:
                raise self._fail(RejectedError, f"{dn} not found")
            chunk = ranged_chunk(entry[1], attr)
            if chunk is None:
                return out  # attribute absent: no values at all
            values, high = chunk
            out.extend(values)
            if high is None:
                return out
            low = high + 1


def _entries(res: Mapping[str, Any]) -> list[Entry]:
    return [
        (e["dn"], e["raw_attributes"]) for e in res.get("entries") or () if e.get("type") == "searchResEntry"
    ]


def _short(exc: BaseException) -> str:
    # ldap3 puts the whole peer certificate into some messages: keep the first line short.
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def _is_tls_failure(exc: BaseException) -> bool:
    if isinstance(exc.__context__, ssl.SSLError):
        return True
    words = str(exc).lower()
    return "certificate" in words or "ssl" in words or "tls" in words


def _quiet_unbind(conn: ldap3.Connection) -> None:
    with contextlib.suppress(lx.LDAPException, OSError):  # already gone: nothing to release
        conn.unbind()
