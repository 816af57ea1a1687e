"""The state store: what BAS knows it has done (SQLite by default, PostgreSQL in production)."""
