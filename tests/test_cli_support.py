"""Shared by the command line and adoption tests: running the CLI, tables, DBStore tables.

Holds no tests itself. Each test module takes the ``cli_db`` fixture from
here: a token table of this worker's own on each migrated backend (a SQLite
file, PostgreSQL and MariaDB), empty at the start of every test, dropped at
the end of the session.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, text
from typer.testing import CliRunner, Result

from conftest import MIGRATED_BACKENDS, drop_schema, server_url
from zoho_token_store import SQLAlchemyTokenStore, migrate
from zoho_token_store.cli_app import app
from zoho_token_store.engine import make_engine, resolve_url
from zoho_token_store.records import FIELDS
from zoho_token_store.refresh import RefreshPolicy

# The SDK README's DDL for DBStore, verbatim (the table name aside).
DBSTORE_DDL = """CREATE TABLE  {table} (
  id varchar(10) NOT NULL,
  user_name varchar(255),
  client_id varchar(255),
  client_secret varchar(255),
  refresh_token varchar(255),
  access_token varchar(255),
  grant_token varchar(255),
  expiry_time varchar(20),
  redirect_url varchar(255),
  api_domain varchar(255),
  primary key (id)
)"""
# The same table from an SDK before api_domain.
OLD_DBSTORE_DDL = DBSTORE_DDL.replace("  api_domain varchar(255),\n", "")
DBSTORE_COLUMNS = FIELDS


def now_ms() -> int:
    return int(time.time() * 1000)


def invoke(
    url: str | None,
    table: str | None,
    *args: str,
    input: str | None = None,
    env: dict[str, str | None] | None = None,
) -> Result:
    """Run ``zoho-token-store [--url URL] [--table TABLE] ARGS`` through Typer's runner."""
    argv: list[str] = []
    if url is not None:
        argv += ["--url", url]
    if table is not None:
        argv += ["--table", table]
    environment: dict[str, str | None] = {"ZOHO_TOKEN_STORE_URL": None, "COLUMNS": "250"}
    environment.update(env or {})
    return _runner().invoke(app, [*argv, *args], input=input, env=environment)


def drop_tables(url: str, names: Sequence[str]) -> None:
    engine = make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            for name in names:
                Table(name, MetaData()).drop(conn, checkfirst=True)
    finally:
        engine.dispose()


def leftovers(table: str) -> list[str]:
    """Every table a test on ``table`` can leave: itself, its version table, adoption's."""
    return [
        table,
        migrate.version_table_name(table),
        f"{table}_adopting",
        f"{table}_dbstore_old",
    ]


def insert_rows(engine: Engine, table: str, rows: Sequence[dict[str, Any]]) -> None:
    with engine.connect() as conn:
        for row in rows:
            names = ", ".join(row)
            params = ", ".join(f":{name}" for name in row)
            statement = f"INSERT INTO {table} ({names}) VALUES ({params})"  # noqa: S608  # test names
            conn.execute(text(statement), row)


def _runner() -> CliRunner:
    # Click 8.2 always keeps stderr apart; 8.1 (the last on Python 3.9) must be asked.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


@dataclass(frozen=True)
class CliDb:
    """A migrated token table on one backend, for CLI tests."""

    name: str
    url: str
    table: str

    def invoke(self, *args: str, input: str | None = None) -> Result:
        return invoke(self.url, self.table, *args, input=input)

    def store(self) -> SQLAlchemyTokenStore:
        return SQLAlchemyTokenStore(
            self.url, table_name=self.table, refresh=RefreshPolicy(enabled=False)
        )

    def engine(self) -> Engine:
        return make_engine(resolve_url(self.url))


@pytest.fixture(scope="session", params=MIGRATED_BACKENDS)
def _cli_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliDb]:
    name: str = request.param
    url = server_url(name, tmp_path_factory)
    db = CliDb(name, url, f"cli_{os.getpid()}")
    drop_tables(url, leftovers(db.table))
    migrate.upgrade(url, table_name=db.table)
    yield db
    drop_schema(url, db.table)


@pytest.fixture
def cli_db(_cli_backend: CliDb) -> CliDb:
    """``_cli_backend`` with its table emptied."""
    store = _cli_backend.store()
    try:
        store.delete_tokens()
    finally:
        store.close()
    return _cli_backend


def _bare(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDb]:
    url = server_url(name, tmp_path_factory)
    db = CliDb(name, url, f"bare_{os.getpid()}")
    drop_tables(url, leftovers(db.table))
    try:
        yield db
    finally:
        drop_tables(url, leftovers(db.table))


@pytest.fixture(params=MIGRATED_BACKENDS)
def bare_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliDb]:
    """A backend and a table name of this worker's own, with no table: each test makes its own."""
    yield from _bare(request.param, tmp_path_factory)


@pytest.fixture
def bare_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDb]:
    """``bare_db`` on MariaDB only."""
    yield from _bare("mariadb", tmp_path_factory)


@pytest.fixture
def bare_postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDb]:
    """``bare_db`` on PostgreSQL only."""
    yield from _bare("postgresql", tmp_path_factory)


def dbstore_for(url: str, table: str) -> Any:
    """The SDK's own DBStore on the MySQL/MariaDB database at ``url``."""
    pytest.importorskip("mysql.connector", reason="the SDK's DBStore needs mysql-connector-python")
    from sqlalchemy import make_url
    from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore

    parsed = make_url(url)
    return DBStore(
        host=parsed.host or "127.0.0.1",
        database_name=parsed.database,
        user_name=parsed.username or "root",
        password=parsed.password or "",
        port_number=str(parsed.port or 3306),
        table_name=table,
    )
