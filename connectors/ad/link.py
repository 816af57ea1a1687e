"""The LDAP link to Active Directory: a TLS connection, typed errors, and reading helpers.

Owns how BAS talks LDAP to a domain controller, whatever it asks for:

- the connection: LDAPS, or ldap:// with StartTLS, always validating the server
  certificate against the configured CA file (and ``tls_server_name`` when the URL
  names the server by another name); a simple bind with the service account. A link
  that is not encrypted never sends a password (``set_password`` refuses).
- typed errors (connectors.base): a server that is down, busy, or times out, or a
  connection that drops, is a TransientError (the connection is reopened on the next
  call); a refusal of one entry (constraint, naming, existing entry, access) is a
  RejectedError naming the object; bad credentials, a TLS failure, a server that insists
  on stronger authentication, or a missing base is a FatalError.
- reading: single entries by ``<GUID=...>`` DN, paged searches (the simple paged
  results control, so a large OU reads in pages under AD's MaxPageSize), and ranged
  reads of multi-valued attributes (``member;range=0-1499``...), because AD returns at
  most MaxValRange (1500) values of an attribute in one answer.

Every DN value and filter value a caller builds must be escaped by the caller
(``mappings.feide.escape_dn_value``, ``ldap3.utils.conv.escape_filter_chars``); GUIDs
are checked against their pattern here before they go into a DN.
"""

from __future__ import annotations

import math
import re
import ssl
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ldap3
from ldap3.core import exceptions as lx

from connectors.base import FatalError, RejectedError, TransientError

# LDAP result codes (RFC 4511) grouped by what they mean for BAS.
SUCCESS = 0
NO_SUCH_ATTRIBUTE = 16
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
UNWILLING_TO_PERFORM = 53
NOT_ALLOWED_ON_NON_LEAF = 66
ENTRY_ALREADY_EXISTS = 68
_TRANSIENT = {3, 11, 51, 52, 80}  # timeLimit, adminLimit, busy, unavailable, other
_FATAL = {2, 7, 8, 13, 48, 49}  # protocol, authMethod, strongAuth, confidentiality, inappropriateAuth, creds

TREE_DELETE = "1.2.840.113556.1.4.805"  # LDAP_SERVER_TREE_DELETE_OID
_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_RANGE_RE = re.compile(r";range=(\d+)-(\d+|\*)$", re.IGNORECASE)

Entry = tuple[str, Mapping[str, list[bytes]]]  # (dn, raw attributes, case-insensitive keys)


def guid_text(raw: bytes) -> str:
    """objectGUID bytes (little-endian as AD stores them) as the usual dashed string."""
    return str(uuid.UUID(bytes_le=raw))


def guid_dn(guid: str) -> str:
    """The ``<GUID=...>`` DN that finds an object wherever it has moved."""
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


def parent_dn(dn: str) -> str:
    """The DN without its first RDN (escapes respected)."""
    i = 0
    while i < len(dn):
        if dn[i] == "\\":
            i += 2
            continue
        if dn[i] == ",":
            return dn[i + 1 :]
        i += 1
    return ""


def first_rdn(dn: str) -> str:
    """The first RDN of a DN, as written (still escaped)."""
    rest = parent_dn(dn)
    return dn[: len(dn) - len(rest) - 1] if rest else dn


def same_dn(a: str, b: str) -> bool:
    """DNs equal as AD compares them (case-insensitively; spaces after commas ignored)."""
    return _norm_dn(a) == _norm_dn(b)


def under(dn: str, base: str) -> bool:
    """True when ``dn`` is ``base`` or lies below it."""
    d, b = _norm_dn(dn), _norm_dn(base)
    return d == b or d.endswith("," + b)


def _norm_dn(dn: str) -> str:
    return re.sub(r"(?<!\\),\s+", ",", dn.strip()).lower()


def parse_range(attr_name: str) -> tuple[int, int | None] | None:
    """(low, high) of a ranged attribute name like ``member;range=0-1499``; high None for ``*``."""
    m = _RANGE_RE.search(attr_name)
    if not m:
        return None
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


class ADLink:
    """One ldap3 connection to a domain controller, opened lazily and reopened after a drop."""

    def __init__(
        self,
        url: str,
        *,
        bind_dn: str,
        password: str,
        ca_file: str,
        start_tls: bool = False,
        tls_server_name: str | None = None,
        timeout: float = 30.0,
        page_size: int = 500,
    ) -> None:
        self.url = url
        self.bind_dn = bind_dn
        self._password = password
        self.ca_file = ca_file
        self.start_tls = start_tls
        self.tls_server_name = tls_server_name
        self.timeout = timeout
        self.page_size = page_size
        self._conn: ldap3.Connection | None = None

    def __repr__(self) -> str:  # never the password
        return f"ADLink({self.url!r}, bind_dn={self.bind_dn!r})"

    # -- connection -------------------------------------------------------------------

    def open(self) -> None:
        """Connect, secure and bind; typed errors on failure."""
        if self._conn is not None:
            return
        use_ssl = self.url.lower().startswith("ldaps://")
        if not use_ssl and not self.start_tls:
            raise FatalError(f"AD: {self.url} is neither ldaps:// nor StartTLS; refusing to bind in clear")
        tls = ldap3.Tls(
            ca_certs_file=self.ca_file,
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            valid_names=[self.tls_server_name] if self.tls_server_name else None,
        )
        server = ldap3.Server(
            self.url, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE, connect_timeout=self.timeout
        )
        conn = ldap3.Connection(
            server,
            user=self.bind_dn,
            password=self._password,
            authentication=ldap3.SIMPLE,
            raise_exceptions=False,
            auto_referrals=False,
            auto_range=False,  # ranges are read here, by read_values
            return_empty_attributes=False,
            receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 packs it as an integer
        )
        try:
            conn.open()
            if self.start_tls and not conn.start_tls():
                raise FatalError(f"AD: StartTLS with {self.url} failed: {conn.result}")
            if not conn.bind():
                res = conn.result or {}
                code = res.get("result")
                msg = f"AD: bind as {self.bind_dn} failed: {res.get('description')} {res.get('message', '')}"
                if code in _TRANSIENT:
                    raise TransientError(msg)
                raise FatalError(msg.strip())
        except lx.LDAPCertificateError as exc:
            raise FatalError(f"AD: TLS certificate of {self.url} not accepted: {_short(exc)}") from exc
        except (lx.LDAPSocketOpenError, lx.LDAPStartTLSError) as exc:
            if isinstance(exc.__context__, ssl.SSLError) or "ssl" in str(exc).lower():
                raise FatalError(f"AD: TLS with {self.url} failed: {_short(exc)}") from exc
            raise TransientError(f"AD: cannot connect to {self.url}: {_short(exc)}") from exc
        except lx.LDAPException as exc:
            raise TransientError(f"AD: connection to {self.url} failed: {_short(exc)}") from exc
        except BaseException:
            _quiet_unbind(conn)
            raise
        self._conn = conn

    @property
    def encrypted(self) -> bool:
        """True when the open connection runs over TLS (LDAPS or StartTLS)."""
        c = self._conn
        return bool(c is not None and (c.server.ssl or c.tls_started))

    def close(self) -> None:
        """Unbind and forget the connection; safe to call twice."""
        if self._conn is not None:
            _quiet_unbind(self._conn)
        self._conn = None

    def _call(self, what: str, fn: str, *args: Any, **kw: Any) -> dict[str, Any]:
        """Run one ldap3 operation; connection failures become TransientError."""
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            getattr(conn, fn)(*args, **kw)
        except lx.LDAPException as exc:
            # The socket is gone or stuck: drop it so the next call reconnects.
            self.close()
            raise TransientError(f"AD: {what}: connection lost: {_short(exc)}") from exc
        res = dict(conn.result or {})
        res["entries"] = conn.response if fn == "search" else None
        return res

    def check(self, res: Mapping[str, Any], what: str, ok: Sequence[int] = ()) -> int:
        """Raise the typed error for a failed result; return the code when it is success or in ``ok``."""
        code = res.get("result", SUCCESS)
        if code == SUCCESS or code in ok:
            return code
        msg = f"AD: {what}: {res.get('description')} ({code}) {res.get('message', '')}".strip()
        if code in _TRANSIENT:
            if code in (51, 52, 80):
                self.close()  # a DC that is going down: reconnect (maybe to another one) next time
            raise TransientError(msg)
        if code in _FATAL:
            raise FatalError(msg)
        raise RejectedError(msg)

    # -- writes -----------------------------------------------------------------------

    def add(self, dn: str, classes: Sequence[str], attrs: Mapping[str, Any], ok: Sequence[int] = ()) -> int:
        """Add an entry; returns the result code (success or one of ``ok``)."""
        return self.check(self._call(f"add {dn}", "add", dn, list(classes), dict(attrs)), f"add {dn}", ok)

    def modify(self, dn: str, changes: Mapping[str, Any], what: str, ok: Sequence[int] = ()) -> int:
        """Modify an entry; returns the result code (success or one of ``ok``)."""
        return self.check(self._call(what, "modify", dn, dict(changes)), what, ok)

    def move(self, dn: str, rdn: str, new_superior: str, what: str, ok: Sequence[int] = ()) -> int:
        """Rename and/or move an entry (modify_dn, the old RDN value deleted)."""
        res = self._call(what, "modify_dn", dn, rdn, delete_old_dn=True, new_superior=new_superior)
        return self.check(res, what, ok)

    def delete(self, dn: str, what: str, *, tree: bool = False, ok: Sequence[int] = ()) -> int:
        """Delete an entry (with its children when ``tree``)."""
        controls = [(TREE_DELETE, True, None)] if tree else None
        return self.check(self._call(what, "delete", dn, controls=controls), what, ok)

    def set_password(self, dn: str, password: str, what: str) -> None:
        """Set unicodePwd (the quoted password in UTF-16-LE); only ever over TLS."""
        self.open()
        if not self.encrypted:
            raise FatalError("AD: refusing to send a password over a connection without TLS")
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
        res = self._call(what, "search", base, filt, scope, attributes=list(attrs), controls=controls)
        code = self.check(res, what, ok=(NO_SUCH_OBJECT,) if missing_ok else ())
        if code == NO_SUCH_OBJECT:
            return []
        entries = res["entries"] or ()
        return [(e["dn"], e["raw_attributes"]) for e in entries if e.get("type") == "searchResEntry"]

    def read(self, dn: str, attrs: Sequence[str], what: str | None = None) -> Entry | None:
        """One entry by DN (a ``<GUID=...>`` DN too); None when it does not exist."""
        found = self.search(dn, "(objectClass=*)", attrs, scope=ldap3.BASE, what=what, missing_ok=True)
        return found[0] if found else None

    def paged(self, base: str, filt: str, attrs: Sequence[str], what: str | None = None) -> Iterator[Entry]:
        """Every entry under ``base``, read in pages of ``page_size`` (simple paged results)."""
        what = what or f"paged search {base}"
        cookie: bytes | None = None
        while True:
            res = self._call(
                what,
                "search",
                base,
                filt,
                ldap3.SUBTREE,
                attributes=list(attrs),
                paged_size=self.page_size,
                paged_cookie=cookie,
            )
            self.check(res, what)
            for e in res["entries"] or ():
                if e.get("type") == "searchResEntry":
                    yield e["dn"], e["raw_attributes"]
            ctrl = (res.get("controls") or {}).get("1.2.840.113556.1.4.319") or {}
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
                raise RejectedError(f"AD: {dn} not found")
            chunk = ranged_chunk(entry[1], attr)
            if chunk is None:
                return out  # attribute absent: no values at all
            values, high = chunk
            out.extend(values)
            if high is None:
                return out
            low = high + 1


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


def _short(exc: BaseException) -> str:
    # ldap3 puts the whole peer certificate into some messages: keep the first line short.
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def _quiet_unbind(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except lx.LDAPException:  # already gone: nothing to release
        pass
    except OSError:
        pass
