"""Alembic environment: always runs on a connection that `concierge.migrate` hands in."""

from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext

from concierge.model import Base
from concierge.model.base import UTCDateTime


def render_item(kind: str, item: Any, autogen: AutogenContext) -> str | bool:
    """Write our column types as plain SQLAlchemy ones, so revisions never import the model."""
    if kind != "type":
        return False
    if isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(item, sa.JSON) and "postgresql" in getattr(item, "_variant_mapping", {}):
        autogen.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")'
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `concierge db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
