"""Alembic environment of the platform schema.

With a connection in `config.attributes["connection"]` (how `qtts admin migrate` and
`Database.migrate` call it) the migration runs on it; otherwise it connects to the platform's
configured database (DATABASE_URL or the embedded SQLite default).
"""

from __future__ import annotations

from alembic import context
from serve_app.platform.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from serve_app.app.args import AppArgs
    from serve_app.app.settings import apply_environment
    from serve_app.platform.db import Database

    database = Database(apply_environment(AppArgs()).platform.resolved_database_url())
    try:
        with database.engine.begin() as connection:
            _run(connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them online")
run_migrations_online()
