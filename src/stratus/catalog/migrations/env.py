"""Alembic environment: runs the metastore migrations on the connection Stratus hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from stratus.catalog.models import Base
from stratus.jobs import models as _jobs_models  # noqa: F401 - registers its tables
from stratus.sharing import models as _sharing_models  # noqa: F401 - registers its tables

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported")
run_migrations()
