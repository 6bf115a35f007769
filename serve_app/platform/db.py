"""One database handle for the platform: SQLite (embedded default) or PostgreSQL, by URL.

Services use `Database.transaction()`; the calls are synchronous and short, and the async
facade (serve_app.platform.service) runs them in worker threads so the ingress's event loop
never waits on the database. On SQLite every transaction starts with BEGIN IMMEDIATE: writers
queue on the busy timeout instead of failing on a lock upgrade, which also makes a job claim
(select + update) atomic there. PostgreSQL claims with FOR UPDATE SKIP LOCKED (jobs.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

REPO_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_DIR = REPO_ROOT / "alembic"
SQLITE_BUSY_TIMEOUT_S = 30


def normalize_url(url: str) -> URL:
    """`postgresql://` and `postgres://` use psycopg 3; SQLite paths get their directory made."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL as it may be printed: password hidden."""
    return make_url(url).render_as_string(hide_password=True) if isinstance(url, str) else \
        url.render_as_string(hide_password=True)


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def insert_of(dialect: str):
    """The INSERT construct of the database `dialect` names, with its ON CONFLICT clauses
    (`on_conflict_do_nothing` / `on_conflict_do_update`): PostgreSQL's or SQLite's."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


def dialect_insert(session: Session):
    """The INSERT construct of `session`'s database (`insert_of`)."""
    return insert_of(session.get_bind().dialect.name)


#: The transaction-local setting PostgreSQL's row-level security policies read
#: (serve_app.platform.isolation): the tenant a transaction acts for.
TENANT_SETTING = "app.tenant_id"


class Database:
    """An engine plus a session factory; a transaction is the unit of work.

    `transaction(tenant_id)` acts for one tenant: on PostgreSQL it sets `app.tenant_id` for
    that transaction only, which the row-level security policies compare every tenant-scoped
    row with. `admin_transaction()` is the admin path and the work that crosses tenants (a
    key looked up by its hash before the tenant is known, a job claimed from any tenant's
    queue): it runs on `admin_url`'s connection (the tables' owner), or on `url`'s when no
    separate admin URL is configured.
    """

    def __init__(self, url: str, admin_url: str | None = None):
        self.url = normalize_url(url)
        self.admin_url = normalize_url(admin_url) if admin_url else None
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=10)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.admin_url is None or self.admin_url == self.url:
            self.admin_engine, self._admin_sessions = self.engine, self._sessions
        else:
            self.admin_engine = _sqlite_engine(self.admin_url) if self.is_sqlite else \
                create_engine(self.admin_url, pool_pre_ping=True, pool_size=5)
            self._admin_sessions = sessionmaker(self.admin_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r})"

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @contextlib.contextmanager
    def transaction(self, tenant_id: str | None = None) -> Iterator[Session]:
        """A transaction of the application role, acting for `tenant_id` (under PostgreSQL's
        row-level security, one with no tenant sees no tenant-scoped row at all)."""
        with self._sessions() as session, session.begin():
            if tenant_id is not None and self.is_postgresql:
                session.execute(text("SELECT set_config(:name, :tenant, true)"),
                                {"name": TENANT_SETTING, "tenant": tenant_id})
            yield session

    @contextlib.contextmanager
    def admin_transaction(self) -> Iterator[Session]:
        """A transaction of the admin role: every tenant's rows."""
        with self._admin_sessions() as session, session.begin():
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with the Alembic migrations (as the admin role,
        the tables' owner)."""
        from alembic import command

        with self.admin_engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.admin_engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.admin_engine is not self.engine:
            self.admin_engine.dispose()


def alembic_config():
    """An Alembic Config pointing at the project's migrations, usable from any directory.
    The connection is handed over in `config.attributes["connection"]` (never a URL in the
    config, so a password is not kept or printed there)."""
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    return config
