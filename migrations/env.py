"""Alembic environment for the connector's own tables (runs, checkpoints, rejects, documents).

Run programmatically only (``ddex_etl.state.upgrade``): the caller passes an open
connection and the state schema in ``config.attributes``; no alembic.ini, no URL
here, so credentials never pass through alembic's configuration.
"""
from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes.get("connection")
schema = config.attributes.get("schema")
if connection is None or not schema:
    raise RuntimeError(
        "migrations run through ddex_etl.state.upgrade()/downgrade(), which pass a connection and the state schema"
    )

context.configure(
    connection=connection,
    target_metadata=None,
    # The version table lives next to the tables it versions, so two connectors
    # with different state schemas in one database never see each other's history.
    version_table_schema=schema,
    transactional_ddl=True,
)

with context.begin_transaction():
    context.run_migrations()
