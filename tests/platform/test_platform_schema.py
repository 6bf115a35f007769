"""The schema is made by the Alembic migrations, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from serve_app.platform.db import Database
from serve_app.platform.models import Base


def test_migrations_create_every_table_the_models_use(database_url):
    db = Database(database_url)
    try:
        assert db.current_revision() is None
        db.migrate()
        assert db.current_revision() == "0007"
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            assert compare_metadata(context, Base.metadata) == []
        db.migrate()  # a second run is a no-op
        assert db.current_revision() == "0007"
    finally:
        db.dispose()
