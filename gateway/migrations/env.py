"""Alembic's environment: migrations run on the connection gateway/database.py hands over (`upgrade head` at
gateway start), in its transaction."""

from alembic import context

from tritone.gateway.db_schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
