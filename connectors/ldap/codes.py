"""LDAP result codes (RFC 4511) and what each means for BAS: retry, skip the entry, or stop.

One table for every LDAP target, with a small override per directory dialect where AD
and OpenLDAP use a code differently. ``error`` turns a failed result into the
connector's typed error (connectors.base): TransientError (the executor retries),
RejectedError (that object is skipped and recorded), FatalError (the target stops for
this run). A code missing from the table is a RejectedError: the server refused this
request for this entry, and sending the same request again gets the same answer.

Callers name the codes that mean success for them (an entry already there on a
create, a missing entry on a delete) with the constants below and pass them as ``ok``
to the link, which checks them before this table.
"""

from __future__ import annotations

from enum import StrEnum

from connectors.errors import ConnectorError, FatalError, RejectedError, TransientError

SUCCESS = 0
OPERATIONS_ERROR = 1
NO_SUCH_ATTRIBUTE = 16
ATTRIBUTE_OR_VALUE_EXISTS = 20
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS_RIGHTS = 50
BUSY = 51
UNAVAILABLE = 52
UNWILLING_TO_PERFORM = 53
NOT_ALLOWED_ON_NON_LEAF = 66
ENTRY_ALREADY_EXISTS = 68
OTHER = 80


class Outcome(StrEnum):
    """What a failed result means for the change (and the target) it came from."""

    TRANSIENT = "transient"
    REJECTED = "rejected"
    FATAL = "fatal"


class Dialect(StrEnum):
    """The directory on the other end, where it uses a result code its own way."""

    AD = "ad"
    OPENLDAP = "openldap"


T, R, F = Outcome.TRANSIENT, Outcome.REJECTED, Outcome.FATAL

# code: (outcome, why)
TABLE: dict[int, tuple[Outcome, str]] = {
    OPERATIONS_ERROR: (
        T,
        "operationsError: the session is out of step (e.g. a bind still pending); a new connection fixes it",
    ),
    2: (F, "protocolError: client and server do not agree on the protocol; configuration"),
    3: (T, "timeLimitExceeded: the server ran out of time for this request; it may not next time"),
    4: (R, "sizeLimitExceeded: the answer is too big for this request; the same request fails again"),
    7: (F, "authMethodNotSupported: the bind method is refused; configuration"),
    8: (F, "strongerAuthRequired: the server wants more than a simple bind over TLS; configuration"),
    11: (T, "adminLimitExceeded: a server-side limit for now (e.g. too many operations at once)"),
    13: (F, "confidentialityRequired: the server refuses this connection's security; configuration"),
    NO_SUCH_ATTRIBUTE: (R, "noSuchAttribute: the entry lacks the value this request names"),
    17: (R, "undefinedAttributeType: the schema has no such attribute"),
    18: (R, "inappropriateMatching: the request does not suit the attribute"),
    19: (R, "constraintViolation: a value breaks a constraint (length, password policy)"),
    ATTRIBUTE_OR_VALUE_EXISTS: (R, "attributeOrValueExists: the value is there already"),
    21: (R, "invalidAttributeSyntax: a value does not fit the attribute's syntax"),
    NO_SUCH_OBJECT: (R, "noSuchObject: the entry (or its parent) is not there"),
    34: (R, "invalidDNSyntax: the DN of this request is not valid"),
    48: (F, "inappropriateAuthentication: the bind is not allowed this way; configuration"),
    INVALID_CREDENTIALS: (F, "invalidCredentials: wrong bind DN or password; configuration"),
    # Decided once for every directory: rights are granted per subtree and per entry (an
    # AD account protected by AdminSDHolder, an OpenLDAP ACL on one branch), so a refusal
    # names one entry and must not stop the target for every other one. A bind with no
    # rights at all shows up as every change rejected, each with this reason.
    INSUFFICIENT_ACCESS_RIGHTS: (R, "insufficientAccessRights: the bind may not change this entry"),
    BUSY: (T, "busy: the server asks to come back later"),
    UNAVAILABLE: (T, "unavailable: the server is shutting down or not ready"),
    UNWILLING_TO_PERFORM: (R, "unwillingToPerform: the server will not do this to this entry"),
    64: (R, "namingViolation: the DN breaks the directory's naming rules"),
    65: (R, "objectClassViolation: the entry breaks its object classes' rules"),
    NOT_ALLOWED_ON_NON_LEAF: (R, "notAllowedOnNonLeaf: the entry has entries below it"),
    67: (R, "notAllowedOnRDN: the request would change the entry's naming value"),
    ENTRY_ALREADY_EXISTS: (R, "entryAlreadyExists: another entry holds this DN"),
    69: (R, "objectClassModsProhibited: the object classes cannot change"),
    71: (R, "affectsMultipleDSAs: the request crosses servers"),
    OTHER: (T, "other: a server-side failure without a better code; often a server going down"),
}

OVERRIDES: dict[Dialect, dict[int, tuple[Outcome, str]]] = {
    Dialect.AD: {
        # AD answers operationsError (DIR_ERROR and the like) for requests it will not
        # carry out on one object, such as a move the target container refuses.
        OPERATIONS_ERROR: (R, "operationsError: AD will not do this to this object"),
    },
    Dialect.OPENLDAP: {
        # back-mdb answers "other" for a database that cannot take writes (map full, an
        # I/O error): retrying or skipping entry after entry would only hide that.
        OTHER: (F, "other: the database cannot take writes (full or failing); see the server's log"),
    },
}

# After these the connection is dropped and the next call opens a new one (maybe to
# another server behind the same name).
RECONNECT = frozenset({OPERATIONS_ERROR, BUSY, UNAVAILABLE, OTHER})


def outcome(code: int, dialect: Dialect) -> tuple[Outcome, str]:
    """The outcome of a failed result code for a directory of ``dialect``, and why."""
    found = OVERRIDES[dialect].get(code) or TABLE.get(code)
    return found or (R, f"result code {code}: refused for this entry")


def error(code: int, dialect: Dialect, message: str) -> ConnectorError:
    """The typed connector error for a failed result (``message`` already masked)."""
    kind, _ = outcome(code, dialect)
    if kind is Outcome.TRANSIENT:
        return TransientError(message)
    if kind is Outcome.FATAL:
        return FatalError(message)
    return RejectedError(message)
