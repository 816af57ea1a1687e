"""What every LDAP target shares: the link, result codes, DNs and LDIF."""
