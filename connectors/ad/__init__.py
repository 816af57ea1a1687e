"""The Active Directory target: connector over LDAPS (ldap3)."""
