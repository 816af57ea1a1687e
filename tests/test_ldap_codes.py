"""connectors.ldap.codes: one result-code table, with the AD and OpenLDAP overrides."""

from __future__ import annotations

import pytest

from connectors.errors import FatalError, RejectedError, TransientError
from connectors.ldap import codes
from connectors.ldap.codes import Dialect, Outcome

T, R, F = Outcome.TRANSIENT, Outcome.REJECTED, Outcome.FATAL

# code: (AD, OpenLDAP)
EXPECTED = {
    1: (R, T),  # operationsError: AD refuses that object; OpenLDAP's session is out of step
    2: (F, F),  # protocolError
    3: (T, T),  # timeLimitExceeded
    4: (R, R),  # sizeLimitExceeded
    7: (F, F),  # authMethodNotSupported
    8: (F, F),  # strongerAuthRequired
    11: (T, T),  # adminLimitExceeded
    13: (F, F),  # confidentialityRequired
    16: (R, R),  # noSuchAttribute
    17: (R, R),  # undefinedAttributeType
    19: (R, R),  # constraintViolation
    20: (R, R),  # attributeOrValueExists
    21: (R, R),  # invalidAttributeSyntax
    32: (R, R),  # noSuchObject
    34: (R, R),  # invalidDNSyntax
    48: (F, F),  # inappropriateAuthentication
    49: (F, F),  # invalidCredentials
    50: (R, R),  # insufficientAccessRights: decided once, the same for both
    51: (T, T),  # busy
    52: (T, T),  # unavailable
    53: (R, R),  # unwillingToPerform
    64: (R, R),  # namingViolation
    65: (R, R),  # objectClassViolation
    66: (R, R),  # notAllowedOnNonLeaf
    68: (R, R),  # entryAlreadyExists
    80: (T, F),  # other: a DC going down; a back-mdb database that cannot take writes
    999: (R, R),  # a code nobody knows: refused for this entry
}


@pytest.mark.parametrize(("code", "want"), sorted(EXPECTED.items()))
@pytest.mark.parametrize("dialect", list(Dialect))
def test_every_code_in_each_dialect(code: int, want: tuple[Outcome, Outcome], dialect: Dialect) -> None:
    expected = want[0] if dialect is Dialect.AD else want[1]
    outcome, why = codes.outcome(code, dialect)
    assert outcome is expected, (code, dialect, why)
    assert why  # every entry says why
    err = codes.error(code, dialect, f"t: {why}")
    kind = {T: TransientError, R: RejectedError, F: FatalError}[expected]
    assert type(err) is kind and str(err) == f"t: {why}"


def test_the_table_names_every_code_once_and_overrides_stay_small() -> None:
    assert codes.SUCCESS not in codes.TABLE
    for dialect, overrides in codes.OVERRIDES.items():
        assert 0 < len(overrides) <= 3, dialect
        for code, (outcome, _) in overrides.items():
            assert codes.TABLE[code][0] is not outcome, (
                dialect,
                code,
            )  # an override that changes nothing is noise
    assert {codes.BUSY, codes.UNAVAILABLE} <= codes.RECONNECT
