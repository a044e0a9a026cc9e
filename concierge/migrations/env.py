"""Alembic environment: always runs on a connection that `concierge.migrate` hands in."""

from alembic import context

from concierge.model import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `concierge db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
