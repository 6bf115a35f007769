"""Fixtures of the platform tests: each database test runs on SQLite and on PostgreSQL, each
limit test on the in-process backend and on Redis.

On PostgreSQL the `platform` fixture connects as the production roles do: the application
as a login member of `qtts_app` (bound by row-level security), the admin path as the tables'
owner (ADMIN_DATABASE_URL), so every platform test there runs under the RLS policies.

PostgreSQL (postgresql://postgres@127.0.0.1:5432/test) gets a fresh schema per test, dropped
afterwards; Redis (127.0.0.1:6379) a fresh key prefix, deleted afterwards. When a server is
not running its tests are skipped, unless QTTS_REQUIRE_BACKENDS=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from platform_testing import Receiver, as_login, platform_args
from sqlalchemy import create_engine, text

from serve_app.platform.isolation import APP_ROLE
from serve_app.platform.service import Platform

POSTGRES_URL = os.environ.get("QTTS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("QTTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("QTTS_REQUIRE_BACKENDS") == "1"
#: The login the application connects as in the PostgreSQL tests (a member of APP_ROLE).
APP_LOGIN = "qtts_test_app"


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable ({type(exc).__name__})"
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        engine = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        _unavailable("PostgreSQL", exc)
    return POSTGRES_URL


@pytest.fixture
def postgres_schema_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema."""
    schema = f"qtts_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_app_login(postgres_server: str) -> str:
    """A login role in `qtts_app`, as an operator makes one for the application (roles are
    per server: made once, kept)."""
    engine = create_engine(postgres_server.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for statement in (f"CREATE ROLE {APP_ROLE} NOLOGIN",
                          f"CREATE ROLE {APP_LOGIN} LOGIN IN ROLE {APP_ROLE}"):
            connection.execute(text(f"DO $$ BEGIN {statement}; "
                                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
    engine.dispose()
    return APP_LOGIN


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture(scope="session")
def redis_server() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001
        _unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    import redis

    prefix = f"qtts-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def platform(request, database_url: str, tmp_path: Path) -> Iterator[Platform]:
    admin_url = None
    if database_url.startswith("postgresql"):
        login = request.getfixturevalue("postgres_app_login")
        admin_url, database_url = database_url, as_login(database_url, login)
    p = Platform.open(platform_args(database_url, tmp_path, admin_database_url=admin_url),
                      migrate=True)
    yield p
    p.close()


@pytest.fixture
def receiver_factory():
    """Local webhook receivers: `make(statuses)` answers with those statuses in turn."""
    made = []

    def make(statuses):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()
