"""The Feide target: live LDAP connector, LDIF file export and the catalog checker."""
