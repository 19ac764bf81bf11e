"""The ``backend`` fixture: every contract test runs on every database.

Server URLs come from environment variables with defaults that match a local
install (PostgreSQL and MariaDB on 127.0.0.1, trust auth):

- ``ZTS_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
- ``ZTS_TEST_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``)

A server that cannot be reached skips its tests with the reason, unless
``ZTS_REQUIRE_BACKENDS=1`` (as in CI), where it fails them instead.
``ZTS_BACKENDS`` (comma-separated, e.g. ``sqlite,sqlite_memory``) runs only
the backends it names; the others are not collected at all.

Each pytest-xdist worker works in a table of its own, so workers never see
each other's rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, event, inspect, text

from zoho_token_store import SQLAlchemyTokenStore, migrate
from zoho_token_store.engine import make_engine, resolve_url

SERVER_URLS = {
    "postgresql": os.environ.get(
        "ZTS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("ZTS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
ALL_BACKENDS = ["sqlite", "sqlite_memory", "postgresql", "mariadb"]


def _selected_backends() -> list[str]:
    wanted = [name.strip() for name in os.environ.get("ZTS_BACKENDS", "").split(",")]
    wanted = [name for name in wanted if name]
    unknown = sorted(set(wanted) - set(ALL_BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"ZTS_BACKENDS: unknown backend(s) {', '.join(unknown)}; "
            f"choose from {','.join(ALL_BACKENDS)}"
        )
    return [name for name in ALL_BACKENDS if name in wanted] if wanted else ALL_BACKENDS


BACKENDS = _selected_backends()
# Backends whose schema comes from the migrations (in-memory SQLite makes its own).
MIGRATED_BACKENDS = [name for name in BACKENDS if name != "sqlite_memory"]
REQUIRE_BACKENDS = os.environ.get("ZTS_REQUIRE_BACKENDS") == "1"


@dataclass(frozen=True)
class Backend:
    """One database under test: where it is and which table this worker uses."""

    name: str
    url: str
    table_name: str

    def store(self) -> SQLAlchemyTokenStore:
        return SQLAlchemyTokenStore(self.url, table_name=self.table_name)


def _worker_table(prefix: str = "tok") -> str:
    # The process id keeps concurrent test runs on one server, and the
    # xdist workers of one run, out of each other's tables.
    return f"{prefix}_{os.getpid()}"


def _require_reachable(name: str, url: str) -> None:
    engine = make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"{name} at {url} is not reachable: {type(exc).__name__}"
        if REQUIRE_BACKENDS:
            pytest.fail(reason + " (ZTS_REQUIRE_BACKENDS=1: every backend must run)")
        pytest.skip(reason)
    finally:
        engine.dispose()


def server_url(name: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for ``name``; a fresh SQLite file per session for ``sqlite``."""
    if name == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "tokens.db"
        return f"sqlite:///{path}"
    if name == "sqlite_memory":
        return "sqlite://"
    url = SERVER_URLS[name]
    _require_reachable(name, url)
    return url


@pytest.fixture(scope="session")
def _prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Backend]]:
    """The backends this session has migrated, by name; their tables dropped at the end."""
    prepared: dict[str, Backend] = {}
    yield prepared
    for ready in prepared.values():
        if ready.name != "sqlite_memory":
            drop_schema(ready.url, ready.table_name)


def _prepare(
    name: str, prepared: dict[str, Backend], tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    if name not in prepared:
        url = server_url(name, tmp_path_factory)
        table = _worker_table()
        if name != "sqlite_memory":
            migrate.upgrade(url, table_name=table)
        prepared[name] = Backend(name, url, table)
    return prepared[name]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    _prepared: dict[str, Backend],
    tmp_path_factory: pytest.TempPathFactory,
) -> Backend:
    """Each database, migrated to head once per session in this worker's table."""
    return _prepare(request.param, _prepared, tmp_path_factory)


@pytest.fixture(scope="session", params=MIGRATED_BACKENDS)
def shared_backend(
    request: pytest.FixtureRequest,
    _prepared: dict[str, Backend],
    tmp_path_factory: pytest.TempPathFactory,
) -> Backend:
    """Each database that other processes can reach too: all but in-memory SQLite."""
    return _prepare(request.param, _prepared, tmp_path_factory)


def drop_schema(url: str, table: str) -> None:
    """Empty ``table``, downgrade it to base, drop its version table: leave the server as found."""
    engine = make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            if inspect(conn).has_table(table):
                conn.execute(Table(table, MetaData()).delete())
        migrate.downgrade(url, "base", table_name=table)
        with engine.connect() as conn:
            Table(migrate.version_table_name(table), MetaData()).drop(conn, checkfirst=True)
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=MIGRATED_BACKENDS)
def migrated_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    """A database whose schema comes from the migrations, with a table of its own."""
    name: str = request.param
    return Backend(name, server_url(name, tmp_path_factory), _worker_table("mig"))


@pytest.fixture(scope="session")
def _session_stores() -> Iterator[dict[Backend, SQLAlchemyTokenStore]]:
    stores: dict[Backend, SQLAlchemyTokenStore] = {}
    yield stores
    for store in stores.values():
        store.close()


def _empty_store(
    backend: Backend, stores: dict[Backend, SQLAlchemyTokenStore]
) -> SQLAlchemyTokenStore:
    if backend not in stores:
        stores[backend] = backend.store()
    token_store = stores[backend]
    token_store.delete_tokens()
    return token_store


# A fixed key for the tests that run with encryption at rest on.
ENCRYPTION_KEY = "q1AwVZmJ4tE9vXo2rK8sYb3nC6dF0gH5iJ7kL2mN4pQ="


@pytest.fixture(params=["plain", "encrypted"])
def store_either_way(
    request: pytest.FixtureRequest, backend: Backend, _session_stores: dict[Any, Any]
) -> SQLAlchemyTokenStore:
    """A store on ``backend`` whose table starts empty, without and with encryption keys.

    A test module that wants its tests run both ways overrides ``store`` with it.
    """
    cache_key = (backend, request.param)
    if cache_key not in _session_stores:
        keys = [ENCRYPTION_KEY] if request.param == "encrypted" else None
        _session_stores[cache_key] = SQLAlchemyTokenStore(
            backend.url, table_name=backend.table_name, encryption_keys=keys
        )
    token_store: SQLAlchemyTokenStore = _session_stores[cache_key]
    token_store.delete_tokens()
    return token_store


@pytest.fixture
def store(
    backend: Backend, _session_stores: dict[Backend, SQLAlchemyTokenStore]
) -> SQLAlchemyTokenStore:
    """A store on ``backend`` whose table starts empty."""
    return _empty_store(backend, _session_stores)


@pytest.fixture
def shared_store(
    shared_backend: Backend, _session_stores: dict[Backend, SQLAlchemyTokenStore]
) -> SQLAlchemyTokenStore:
    """A store on ``shared_backend`` whose table starts empty."""
    return _empty_store(shared_backend, _session_stores)


class StatementLog:
    """The SQL statements an engine ran while :meth:`recording`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _before(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        self.statements.append(statement.split(None, 1)[0].upper())

    @contextmanager
    def recording(self) -> Iterator[list[str]]:
        self.statements = []
        event.listen(self.engine, "before_cursor_execute", self._before)
        try:
            yield self.statements
        finally:
            event.remove(self.engine, "before_cursor_execute", self._before)


@pytest.fixture
def statements(store: SQLAlchemyTokenStore) -> StatementLog:
    """Records the first word of each statement the store runs."""
    return StatementLog(store.engine)
