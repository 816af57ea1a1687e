"""Alembic migration scripts of the state store (run by ``bas db upgrade``)."""
