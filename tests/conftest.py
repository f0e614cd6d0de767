"""Shared fixtures: a database on each backend, sessions, and an isolated environment for CLI tests.

Database fixtures are parametrised over two backends, so a test that takes `engine` or `session`
runs twice: `[sqlite]` on a temporary file and `[postgres]` in a fresh schema of its own.

    db_url         URL of an empty database (nothing migrated)         sqlite | postgres
    empty_engine   engine on it, no tables                             sqlite | postgres
    engine         engine on it, migrated to head                      sqlite | postgres
    session        a Session on `engine`, rolled back and closed after sqlite | postgres
    outbound_env   OUTBOUND_DATA_DIR / OUTBOUND_DATABASE_URL in a temporary directory (SQLite),
                   cwd there too, so no `.env` of the checkout leaks in; for CliRunner tests
    outbound_env_db  the same, with OUTBOUND_DATABASE_URL = `db_url` (both backends)
    cli_runner     typer.testing.CliRunner()

PostgreSQL: OUTBOUND_TEST_POSTGRES_URL, else postgresql+psycopg2://postgres@127.0.0.1:5432/test.
Unreachable: the test fails when CI=true (CI must test PostgreSQL), otherwise it is skipped.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session
from typer.testing import CliRunner

from outbound.db import dispose_engines, ensure_schema, make_engine, masked_url

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# The audit chain's HMAC key for tests outside `outbound_env` (which clears it and so gets a
# fresh audit.key in its data dir): without it the first append would create ./.outbound/audit.key.
os.environ.setdefault("OUTBOUND_AUDIT_KEY", "test-audit-key-not-secret-0123456789abcdef")


def postgres_admin_url() -> URL:
    return make_url(os.environ.get("OUTBOUND_TEST_POSTGRES_URL") or DEFAULT_TEST_POSTGRES_URL)


@dataclass
class PostgresServer:
    engine: Engine | None                  # None when the server cannot be reached
    unreachable_reason: str = ""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The test PostgreSQL server, probed once per test run."""
    engine = make_engine(postgres_admin_url(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        yield PostgresServer(None, str(exc.orig).strip().splitlines()[0])
        return
    yield PostgresServer(engine)
    engine.dispose()


def _require_postgres(server: PostgresServer) -> Engine:
    if server.engine is not None:
        return server.engine
    where = masked_url(postgres_admin_url())
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI but {where} is unreachable: "
                    f"{server.unreachable_reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not reachable at {where} ({server.unreachable_reason}): start "
                "PostgreSQL on 127.0.0.1:5432 or set OUTBOUND_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_schema_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL whose connections see only a fresh, uniquely named schema (through search_path);
    the schema is dropped with everything in it afterwards."""
    admin = _require_postgres(postgres_server)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = postgres_admin_url().update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        dispose_engines()         # pooled connections into the schema would outlive it
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'outbound.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """An empty database on each backend."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_schema_url")


@pytest.fixture
def empty_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    ensure_schema(empty_engine)
    return empty_engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
        session.rollback()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite engine only: for what SQLite alone shows (BEGIN IMMEDIATE claims)."""
    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def outbound_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings for a CLI or API test: a fresh data dir (holding the SQLite database) and no
    `.env` or OUTBOUND_* variable from the developer's machine. Returns the data dir."""
    for name in list(os.environ):
        if name.startswith("OUTBOUND_") and name != "OUTBOUND_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("OUTBOUND_DATA_DIR", str(data_dir))
    monkeypatch.setenv("OUTBOUND_DATABASE_URL", f"sqlite:///{data_dir / 'outbound.db'}")
    yield data_dir
    dispose_engines()


@pytest.fixture
def outbound_env_db(outbound_env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`outbound_env` with the database of the parametrised backend; returns its URL."""
    monkeypatch.setenv("OUTBOUND_DATABASE_URL", db_url)
    return db_url


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


# --- authenticated API clients (api.auth) ----------------------------------------------------

from api_users_support import ApiUsers  # noqa: E402  (tests import it from there, not from conftest)


@pytest.fixture
def api_users(engine: Engine) -> ApiUsers:
    """Users `manager`, `compliance`, `agent` and `admin` (named after their role) with tokens."""
    users = ApiUsers(engine, {}, {})
    for role in ("manager", "compliance", "agent", "admin"):
        users.ids[role], headers = users.add(role, role)
        users.tokens[role] = headers["Authorization"].removeprefix("Bearer ")
    return users


@pytest.fixture
def env_api_users(outbound_env: Path) -> ApiUsers:
    """`api_users` in the database of `outbound_env` (what `create_app()` uses without overrides)."""
    from outbound.db import get_engine

    engine = get_engine()
    ensure_schema(engine)
    users = ApiUsers(engine, {}, {})
    for role in ("manager", "compliance", "agent", "admin"):
        users.ids[role], headers = users.add(role, role)
        users.tokens[role] = headers["Authorization"].removeprefix("Bearer ")
    return users
