"""Alembic environment: migrate the connection handed over by provisioner.state.migrate."""

from __future__ import annotations

from alembic import context

from provisioner.state import schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
