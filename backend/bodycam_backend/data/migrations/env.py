"""Alembic's environment: run the migrations on the connection ``data.migrate`` hands over (it holds the
lock that serialises the starts of several instances)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
