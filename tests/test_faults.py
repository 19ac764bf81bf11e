"""Database faults: killed sessions, a server restart, an exhausted pool, unreachable servers.

What the store promises (retry.py): every operation is idempotent and
runs a second time when its connection was lost, on a fresh connection, so a
killed session or a restarted server costs the caller nothing; anything else
is a ``DatabaseError`` (an ``SDKException`` with code ``TOKEN_STORE``) that
says what went wrong, within a bounded time. Whatever happens, a save that
returned is never lost.

- Sessions are killed from an admin connection, by the server session ids the
  store's connections report as they open (``pg_terminate_backend``,
  MariaDB's ``KILL``): idle in the pool, and in the middle of a statement.
- The restart test runs a private PostgreSQL cluster (initdb into a temporary
  directory, its own port), so that restarting it cannot disturb other tests,
  other xdist workers or other users of the shared server. It is stopped and
  removed afterwards, pass or fail.
- The last section drives the error paths reachable from outside and scans
  every log record (all loggers at DEBUG, SQLAlchemy's echo on), every error
  text, traceback and repr for the token values and the client secret.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy import exc as sa_exc

from conftest import Backend
from tokens import as_dict, make_token
from zoho_token_store import (
    DatabaseError,
    InvalidTokenError,
    SchemaMissingError,
    SQLAlchemyTokenStore,
    TokenStoreError,
    migrate,
)
from zoho_token_store.refresh import RefreshPolicy

LONG = os.environ.get("ZTS_LONG") == "1"
REQUIRE_BACKENDS = os.environ.get("ZTS_REQUIRE_BACKENDS") == "1"
SERVERS = ["postgresql", "mariadb"]
ON_SERVERS = pytest.mark.parametrize("shared_backend", SERVERS, indirect=True)
SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}
KILL = {"postgresql": "SELECT pg_terminate_backend({:d})", "mariadb": "KILL {:d}"}
EXPIRY = 4102444800000  # 2100-01-01: never due for refresh
USERS = [f"user-{n}@example.com" for n in range(5)]


def token_for(user: str, n: int, token_id: str | None = None) -> Any:
    """Save number ``n`` of ``user``: values no other save has."""
    return make_token(
        id=token_id,
        user=user,
        client_id="1000.FAULTS",
        client_secret=f"secret-{user}",
        refresh=f"1000.refresh.{user}.{n}",
        access=f"1000.access.{user}.{n}",
        expires=str(EXPIRY + n),
    )


def no_refresh(url: str, table_name: str, **engine_options: Any) -> SQLAlchemyTokenStore:
    return SQLAlchemyTokenStore(
        url,
        table_name=table_name,
        refresh=RefreshPolicy(enabled=False),
        engine_options=engine_options or None,
    )


# --- killed sessions ----------------------------------------------------------------------


class SessionKiller:
    """Kills the server sessions of one store's connections, from an admin connection."""

    def __init__(self, store: SQLAlchemyTokenStore, backend_name: str) -> None:
        self.backend_name = backend_name
        self.sessions: list[int] = []
        self.killed = 0
        self.invalidated: list[BaseException | None] = []
        self.admin = create_engine(store.engine.url, isolation_level="AUTOCOMMIT")
        self._lock = threading.Lock()
        event.listen(store.engine, "connect", self._remember)
        event.listen(store.engine, "invalidate", self._invalidated)

    def _remember(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(SESSION_ID[self.backend_name])
            session = int(cursor.fetchone()[0])
        finally:
            cursor.close()
        with self._lock:
            self.sessions.append(session)

    def _invalidated(self, _dbapi: Any, _record: Any, exception: BaseException | None) -> None:
        self.invalidated.append(exception)

    def kill_all(self) -> int:
        """Kill every session the store has opened so far; return how many."""
        with self._lock:
            sessions, self.sessions = self.sessions, []
        with self.admin.connect() as conn:
            for session in sessions:
                with contextlib.suppress(sa_exc.DBAPIError):  # already gone
                    conn.execute(text(KILL[self.backend_name].format(session)))
        self.killed += len(sessions)
        return len(sessions)

    def close(self) -> None:
        self.admin.dispose()


@pytest.fixture
def faulty(shared_backend: Backend) -> Iterator[tuple[SQLAlchemyTokenStore, SessionKiller]]:
    """A store with an empty table, and a killer for its sessions."""
    store = no_refresh(shared_backend.url, shared_backend.table_name)
    killer = SessionKiller(store, shared_backend.name)  # before the store's first connection
    store.delete_tokens()
    yield store, killer
    killer.close()
    store.delete_tokens()
    store.close()


ANN = "ann@example.com"
OPERATIONS: dict[str, tuple[Callable[[SQLAlchemyTokenStore], object], object]] = {
    # operation: (call, what the table holds afterwards, as dicts)
    "find_token": (lambda s: as_dict(s.find_token(make_token(user=ANN))), "unchanged"),
    "save_token": (lambda s: s.save_token(token_for(ANN, 2, "row-ann")), "saved"),
    "get_tokens": (lambda s: [as_dict(t) for t in s.get_tokens()], "unchanged"),
    "find_token_by_id": (lambda s: as_dict(s.find_token_by_id("row-ann")), "unchanged"),
    "delete_token": (lambda s: s.delete_token("row-ann"), "empty"),
    "delete_tokens": (lambda s: s.delete_tokens(), "empty"),
}


@ON_SERVERS
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_each_operation_succeeds_after_its_idle_session_is_killed(
    faulty: tuple[SQLAlchemyTokenStore, SessionKiller], operation: str
) -> None:
    store, killer = faulty
    stored = token_for(ANN, 1, "row-ann")
    store.save_token(stored)
    assert killer.kill_all() == 1  # the one pooled connection

    returned = OPERATIONS[operation][0](store)

    expected_return = {
        "find_token": as_dict(stored),
        "get_tokens": [as_dict(stored)],
        "find_token_by_id": as_dict(stored),
    }.get(operation)
    assert returned == expected_return
    expected_table = {
        "unchanged": [as_dict(stored)],
        "saved": [as_dict(token_for(ANN, 2, "row-ann"))],
        "empty": [],
    }[str(OPERATIONS[operation][1])]
    assert [as_dict(t) for t in store.get_tokens()] == expected_table
    # The fault was met once, and handled by the one retry on a new session.
    assert len(killer.invalidated) == 1
    assert len(killer.sessions) == 1


def _waiting_on_a_lock(admin: Any, backend_name: str, session: int) -> bool:
    query = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity "
        "WHERE pid = :session AND wait_event_type = 'Lock'",
        "mariadb": "SELECT count(*) FROM information_schema.INNODB_TRX "
        "WHERE trx_mysql_thread_id = :session AND trx_state = 'LOCK WAIT'",
    }[backend_name]
    with admin.connect() as conn:
        return bool(conn.execute(text(query), {"session": session}).scalar_one())


@ON_SERVERS
def test_a_save_whose_session_is_killed_mid_statement_is_saved_by_the_retry(
    shared_backend: Backend, faulty: tuple[SQLAlchemyTokenStore, SessionKiller]
) -> None:
    store, killer = faulty
    store.save_token(token_for(ANN, 1, "row-ann"))
    table = store.table.name
    locker = create_engine(store.engine.url)
    outcome: dict[str, object] = {}

    def save() -> None:
        try:
            store.save_token(token_for(ANN, 2, "row-ann"))
            outcome["result"] = "saved"
        except Exception as exc:
            outcome["result"] = exc

    with locker.connect() as lock:
        # Another session holds the row, so the store's UPDATE waits inside
        # the server when its session is killed.
        lock.execute(text(f"SELECT id FROM {table} WHERE id = 'row-ann' FOR UPDATE"))  # noqa: S608
        saver = threading.Thread(target=save)
        saver.start()
        session = killer.sessions[-1]
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(killer.admin, shared_backend.name, session):
            assert time.monotonic() < deadline, "the save never waited on the row lock"
            time.sleep(0.02)
        assert killer.kill_all() == 1
        time.sleep(0.2)  # the retry now waits on the lock in a new session
        lock.rollback()
    saver.join(timeout=30)
    locker.dispose()

    assert outcome == {"result": "saved"}
    assert [as_dict(t) for t in store.get_tokens()] == [as_dict(token_for(ANN, 2, "row-ann"))]
    assert len(killer.invalidated) == 1


@ON_SERVERS
def test_a_statement_chosen_as_a_deadlock_victim_is_run_again(shared_backend: Backend) -> None:
    # Another transaction holds row "b" and, once the store's DELETE holds "a"
    # and waits for "b", asks for "a": a deadlock. The database rolls back the
    # store's statement and says to try again; the statement is idempotent,
    # as every one of the store's. The store is made the victim: InnoDB rolls
    # back the transaction that changed fewer rows; PostgreSQL, the one whose
    # deadlock_timeout runs out first (a second for the store, a minute for
    # the other), and its DELETE takes rows in heap order, which a freshly
    # truncated table makes a, b, z...
    store = no_refresh(
        shared_backend.url,
        shared_backend.table_name,
        **(
            {"connect_args": {"options": "-c deadlock_timeout=1s"}}
            if shared_backend.name == "postgresql"
            else {}
        ),
    )
    killer = SessionKiller(store, shared_backend.name)
    table = store.table
    if shared_backend.name == "postgresql":
        with killer.admin.connect() as conn:
            conn.exec_driver_sql(f"TRUNCATE TABLE {table.name}")
    else:  # InnoDB deletes in primary key order anyway
        store.delete_tokens()
    for token_id in ("a", "b", *(f"z{n:02d}" for n in range(20))):
        store.save_token(token_for(f"{token_id}@example.com", 1, token_id))
    other = create_engine(store.engine.url)
    outcome: dict[str, object] = {}

    def delete_all() -> None:
        try:
            store.delete_tokens()
            outcome["result"] = "deleted"
        except Exception as exc:
            outcome["result"] = exc

    try:
        with other.connect() as conn, conn.begin():
            if shared_backend.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL deadlock_timeout = '60s'")
            # More rows than the store's statement changes, so that InnoDB picks the store.
            conn.execute(table.update().where(table.c.id.like("z%")).values(api_domain="heavy"))
            conn.execute(table.update().where(table.c.id == "b").values(api_domain="b"))
            deleting = threading.Thread(target=delete_all)
            deleting.start()
            deadline = time.monotonic() + 10
            while not _waiting_on_a_lock(killer.admin, shared_backend.name, killer.sessions[-1]):
                assert not outcome, f"the DELETE ended without waiting for row b: {outcome}"
                assert time.monotonic() < deadline, "the DELETE never waited for row b"
                time.sleep(0.01)
            conn.execute(table.update().where(table.c.id == "a").values(api_domain="a"))
        deleting.join(timeout=30)
        assert outcome == {"result": "deleted"}
        assert store.get_tokens() == []
    finally:
        other.dispose()
        killer.close()
        store.delete_tokens()
        store.close()


FAULT_OPERATIONS = 2000 if LONG else 150


@ON_SERVERS
def test_no_acknowledged_save_is_lost_while_sessions_are_killed_between_operations(
    faulty: tuple[SQLAlchemyTokenStore, SessionKiller],
    record_property: Callable[[str, object], None],
) -> None:
    store, killer = faulty
    rng = random.Random(1)
    acknowledged: dict[str, int] = {}
    for n in range(FAULT_OPERATIONS):
        if rng.random() < 0.1:
            killer.kill_all()
        user = rng.choice(USERS)
        if rng.random() < 0.6:
            store.save_token(token_for(user, n))  # must not raise: the retry absorbs the kill
            acknowledged[user] = n
        else:
            found = store.find_token(make_token(user=user))
            assert (found is None) == (user not in acknowledged)

    stored = {t.get_user_signature().get_name(): as_dict(t) for t in store.get_tokens()}
    assert {user: row["access_token"] for user, row in stored.items()} == {
        user: f"1000.access.{user}.{n}" for user, n in acknowledged.items()
    }
    assert killer.killed > 0
    assert len(killer.invalidated) == killer.killed
    record_property("faults_injected", killer.killed)
    record_property("fault_operations", FAULT_OPERATIONS)
    record_property("rows_lost", 0)


@ON_SERVERS
def test_no_acknowledged_save_is_lost_while_a_thread_kills_sessions_at_random_moments(
    faulty: tuple[SQLAlchemyTokenStore, SessionKiller],
    record_property: Callable[[str, object], None],
) -> None:
    # A kill can land at any point, also after a save committed but before the
    # store heard so; and, rarely, on both attempts of one operation, which
    # then fails with a DatabaseError. No acknowledged save may be lost, and a
    # save that failed may or may not have been applied.
    store, killer = faulty
    stop = threading.Event()

    def kill_at_random() -> None:
        pause = random.Random(2)
        while not stop.wait(pause.uniform(0.01, 0.05)):
            killer.kill_all()

    killing = threading.Thread(target=kill_at_random)
    killing.start()
    applied: dict[str, set[int]] = {user: set() for user in USERS}  # acked last, or failed since
    failures: list[TokenStoreError] = []
    rng = random.Random(3)
    try:
        for n in range(FAULT_OPERATIONS):
            user = rng.choice(USERS)
            try:
                store.save_token(token_for(user, n))
                applied[user] = {n}
            except TokenStoreError as error:
                failures.append(error)
                applied[user].add(n)
    finally:
        stop.set()
        killing.join()

    assert all(type(e) is DatabaseError and e.code == "TOKEN_STORE" for e in failures)
    stored = {t.get_user_signature().get_name(): t.get_access_token() for t in store.get_tokens()}
    for user, candidates in applied.items():
        if candidates:
            assert stored[user] in {f"1000.access.{user}.{n}" for n in candidates}
    record_property("faults_injected", killer.killed)
    record_property("fault_operations", FAULT_OPERATIONS)
    record_property("fault_operations_failed_after_retry", len(failures))
    record_property("rows_lost", 0)


# --- a full server restart (a private PostgreSQL cluster) ----------------------------------


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of this test's own, driven by pg_ctl."""

    def __init__(self, pg_bin: Path) -> None:
        # initdb refuses to run as root: the cluster then belongs to the
        # postgres user, in a directory it can reach (pytest's are private).
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.pg_bin = pg_bin
        self.base = Path(tempfile.mkdtemp(prefix="zts-pg-"))
        if self.as_user:
            shutil.chown(self.base, "postgres")
        self.data = self.base / "data"
        port = _free_port()
        self.options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={self.base} -c fsync=off"
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.pg_bin / program), *args],
            check=True,
            capture_output=True,
            timeout=300,
        )

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "120", action, *args)

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")
        self.start()

    def start(self) -> None:
        self._pg_ctl("start", "-o", self.options, "-l", str(self.base / "log"))

    def stop(self) -> None:
        """An immediate shutdown: to the clients and to recovery, a crash."""
        self._pg_ctl("stop", "-m", "immediate")

    def crash_restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg_bin = _postgres_bin()
    if pg_bin is None:
        message = "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        if REQUIRE_BACKENDS:
            pytest.fail(message)
        pytest.skip(message)
    cluster = PrivatePostgres(pg_bin)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.remove()  # stopped and deleted, pass or fail


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_crashed_and_restarted_server_keeps_every_acknowledged_save_and_the_store_carries_on(
    private_postgres: PrivatePostgres, record_property: Callable[[str, object], None]
) -> None:
    url = private_postgres.url
    migrate.upgrade(url)
    store = no_refresh(url, "oauthtoken", connect_args={"connect_timeout": 2})
    invalidated: list[object] = []
    event.listen(store.engine, "invalidate", lambda *args: invalidated.append(args))
    try:
        saved = [token_for(user, 1) for user in USERS]
        for token in saved:
            store.save_token(token)

        private_postgres.crash_restart()  # an immediate shutdown, then crash recovery

        assert [as_dict(store.find_token_by_id(t.get_id())) for t in saved] == [
            as_dict(t) for t in saved
        ]
        assert len(invalidated) == 1  # the first operation met the dead connection

        private_postgres.stop()
        started = time.monotonic()
        with pytest.raises(DatabaseError) as down:
            store.save_token(token_for(USERS[0], 2))
        elapsed = time.monotonic() - started
        private_postgres.start()

        # While it was down: a clear error, within (attempts + 1) x connect_timeout.
        assert down.value.code == "TOKEN_STORE"
        assert down.value.error_message.startswith("save_token failed: OperationalError: ")
        assert "Connection refused" in down.value.error_message
        assert elapsed < 8
        # Up again: the store carries on, and nothing acknowledged was lost.
        store.save_token(token_for(USERS[0], 3, saved[0].get_id()))
        assert sorted((as_dict(t) for t in store.get_tokens()), key=lambda t: t["user_name"]) == [
            as_dict(token_for(USERS[0], 3, saved[0].get_id())),
            *(as_dict(t) for t in saved[1:]),
        ]
    finally:
        store.close()
    record_property("faults_injected", 2)  # one crash-restart, one stop
    record_property("rows_lost", 0)


# --- an exhausted pool --------------------------------------------------------------------


@pytest.fixture
def one_connection_store(backend: Backend) -> Iterator[SQLAlchemyTokenStore]:
    """A store whose pool has one connection and waits at most a second for it."""
    store = SQLAlchemyTokenStore(
        backend.url,
        table_name=backend.table_name,
        engine_options={"pool_size": 1, "max_overflow": 0, "pool_timeout": 1},
    )
    store.delete_tokens()
    yield store
    store.delete_tokens()
    store.close()


@pytest.mark.parametrize("operation", ["find_token_by_id", "save_token"])
def test_an_exhausted_pool_gives_a_clear_error_within_its_timeout_then_recovers(
    one_connection_store: SQLAlchemyTokenStore, operation: str
) -> None:
    store = one_connection_store
    call = {
        "find_token_by_id": lambda: store.find_token_by_id("row-ann"),
        "save_token": lambda: store.save_token(token_for(ANN, 1, "row-ann")),
    }[operation]
    taken, release = threading.Event(), threading.Event()

    def hold_the_only_connection() -> None:
        with store.engine.connect():
            taken.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    assert taken.wait(timeout=30)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseError) as info:
            call()
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join()

    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message.startswith(
        f"{operation} failed: TimeoutError: QueuePool limit of size 1 overflow 0 reached, "
        "connection timed out, timeout 1.00"
    )
    assert 0.9 < elapsed < 5  # the pool's timeout, and slack for a loaded machine
    call()  # the connection is back: the same call works
    assert [t.get_id() for t in store.get_tokens()] == (
        ["row-ann"] if operation == "save_token" else []
    )


# --- unreachable servers ------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield int(listener.getsockname()[1])
    stop.set()
    acceptor.join()
    for connection in accepted:
        connection.close()
    listener.close()


SILENT = {
    "postgresql": (
        "postgresql://postgres@127.0.0.1:{port}/test",
        {"connect_timeout": 2},  # libpq's and psycopg's minimum
        "ConnectionTimeout: connection timeout expired",
    ),
    "mariadb": (
        "mysql://root@127.0.0.1:{port}/test",
        # PyMySQL's connect_timeout covers the TCP connect only; the
        # handshake waits for read_timeout.
        {"connect_timeout": 1, "read_timeout": 1},
        "OperationalError: (2013, 'Lost connection to MySQL server during query (timed out)')",
    ),
}


@pytest.mark.parametrize("server", SERVERS)
def test_a_silent_server_gives_a_clear_error_within_the_configured_timeouts(
    silent_server: int, server: str
) -> None:
    url, timeouts, detail = SILENT[server]
    store = SQLAlchemyTokenStore(
        url.format(port=silent_server), engine_options={"connect_args": timeouts}
    )
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseError) as info:
            store.find_token_by_id("row-ann")
    finally:
        store.close()
    elapsed = time.monotonic() - started

    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message == f"find_token_by_id failed: {detail}"
    # Two attempts, and the schema check after an OperationalError: three timeouts at most.
    assert elapsed < 3 * timeouts["connect_timeout"] + 3


def timeouts_of_first_connection(store: SQLAlchemyTokenStore) -> dict[str, Any]:
    """The ``*_timeout`` arguments the driver got for the store's first connection."""
    seen: list[dict[str, Any]] = []
    event.listen(store.engine, "do_connect", lambda _d, _r, _args, params: seen.append(params))
    try:
        store.get_tokens()
    finally:
        store.close()
    return {name: value for name, value in seen[0].items() if name.endswith("_timeout")}


@ON_SERVERS
def test_by_default_connecting_and_reading_are_bounded_by_timeouts(
    shared_backend: Backend,
) -> None:
    store = SQLAlchemyTokenStore(shared_backend.url, table_name=shared_backend.table_name)

    timeouts = timeouts_of_first_connection(store)

    if shared_backend.name == "postgresql":
        assert timeouts == {"connect_timeout": 10}
    else:  # PyMySQL's connect_timeout covers the TCP connect only: it needs a read timeout
        assert timeouts == {"connect_timeout": 10, "read_timeout": 15, "write_timeout": 15}


@ON_SERVERS
def test_timeouts_given_in_the_url_or_in_connect_args_win_over_the_defaults(
    shared_backend: Backend,
) -> None:
    url = make_url(shared_backend.url).update_query_dict({"connect_timeout": "7"})
    options = {"connect_args": {"write_timeout": 9}} if shared_backend.name == "mariadb" else {}
    store = SQLAlchemyTokenStore(url, table_name=shared_backend.table_name, engine_options=options)

    timeouts = timeouts_of_first_connection(store)

    if shared_backend.name == "postgresql":
        assert timeouts == {"connect_timeout": "7"}
    else:  # PyMySQL's dialect turns the URL's value into an int
        assert timeouts == {"connect_timeout": 7, "read_timeout": 15, "write_timeout": 9}


# It waits out the default timeouts, so it exists in the long runs only (ZTS_LONG=1).
if LONG:

    @pytest.mark.parametrize("server", SERVERS)
    def test_by_default_a_silent_server_gives_an_error_within_a_minute(
        silent_server: int, server: str
    ) -> None:
        store = SQLAlchemyTokenStore(SILENT[server][0].format(port=silent_server))
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                store.find_token_by_id("row-ann")
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=60)
        assert len(outcome) == 1
        assert isinstance(outcome[0], DatabaseError)


REFUSING = {
    "postgresql": [
        ({"username": "no_such_role"}, 'role "no_such_role" does not exist'),
        ({"database": "no_such_db"}, 'database "no_such_db" does not exist'),
    ],
    "mariadb": [
        ({"username": "no_such_user"}, "Access denied for user 'no_such_user'"),
        ({"database": "no_such_db"}, "Unknown database 'no_such_db'"),
    ],
}


@ON_SERVERS
@pytest.mark.parametrize("case", [0, 1], ids=["unknown-user", "unknown-database"])
def test_a_server_that_refuses_the_login_gives_an_error_naming_the_reason_at_once(
    shared_backend: Backend, case: int
) -> None:
    change, reason = REFUSING[shared_backend.name][case]
    store = SQLAlchemyTokenStore(make_url(shared_backend.url).set(**change))
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseError) as info:
            store.save_token(token_for(ANN, 1))
    finally:
        store.close()

    assert info.value.code == "TOKEN_STORE"
    assert info.value.error_message.startswith("save_token failed: OperationalError: ")
    assert reason in info.value.error_message
    assert time.monotonic() - started < 5


# --- no secret in any log, error text or repr, on any error path ----------------------------


URL_PASSWORD = "pw-faults-do-not-echo"
SECRET_USER = "secretive@example.com"
SECRETS = {
    "client_secret": "cs-faults-5e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b",
    "refresh_token": "1000.rt-faults-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "access_token": "1000.at-faults-f9e8d7c6b5a4938271605f4e3d2c1b0a",
    "grant_token": "1000.gt-faults-13579bdf2468ace013579bdf2468ace0",
}


def secret_token(token_id: str | None = None, **changes: Any) -> Any:
    fields = {
        "id": token_id,
        "user": SECRET_USER,
        "client_id": "1000.FAULTS",
        "client_secret": SECRETS["client_secret"],
        "refresh": SECRETS["refresh_token"],
        "access": SECRETS["access_token"],
        "grant": SECRETS["grant_token"],
        "expires": str(EXPIRY),
    }
    fields.update(changes)
    return make_token(**fields)


def every_text_of(error: BaseException) -> list[str]:
    """What a log line, an error report or a debugger shows of ``error`` and its causes."""
    texts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        for attribute in ("cause", "orig"):
            inner = getattr(current, attribute, None)
            if isinstance(inner, BaseException):
                texts += [str(inner), repr(inner)]
        current = current.__cause__ or current.__context__
    return texts


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, at DEBUG."""
    for name in (None, "sqlalchemy", "zoho_token_store", "SDKLogger"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def logged_text(caplog: pytest.LogCaptureFixture, captured: Any) -> str:
    parts = [caplog.text, captured.out, captured.err]
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            parts += every_text_of(record.exc_info[1])
    return "\n".join(parts)


def leaked(text_: str) -> list[str]:
    candidates = {**SECRETS, "url_password": URL_PASSWORD}
    return sorted(name for name, value in candidates.items() if value in text_)


def _echoing(url: str, table_name: str, **options: Any) -> SQLAlchemyTokenStore:
    return SQLAlchemyTokenStore(
        url,
        table_name=table_name,
        refresh=RefreshPolicy(enabled=False),
        engine_options={"echo": "debug", "echo_pool": "debug", **options},
    )


def _error_paths(backend: Backend) -> Iterator[tuple[str, Callable[[], object]]]:
    """Each reachable error path, as (name, call that raises)."""
    store = _echoing(backend.url, backend.table_name)
    try:
        store.delete_tokens()
        store.save_token(secret_token("row-secret"))
        # Refused input, with every secret in the token's other fields.
        yield "nul", lambda: store.save_token(secret_token(api_domain="x\x00y"))
        yield "bad-type", lambda: store.save_token(secret_token(client_id=42))
        yield "bad-expiry", lambda: store.find_token(secret_token(expires="soon"))
        yield "too-long", lambda: store.save_token(secret_token(id="i" * 65))
        yield (
            "no-credential",
            lambda: store.save_token(
                make_token(user=SECRET_USER, client_secret=SECRETS["client_secret"])
            ),
        )
        # A unique violation: the insert loses its race twice.
        yield "integrity", lambda: _lose_the_insert_race_twice(store, backend)
    finally:
        store.delete_tokens()
        store.close()
    if backend.name != "sqlite_memory":  # in memory, the store creates its own table
        missing = _echoing(backend.url, "no_such_table_here")
        try:
            yield "schema-missing", lambda: missing.save_token(secret_token())
        finally:
            missing.close()
    crowded = _echoing(
        backend.url, backend.table_name, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        yield "pool-timeout", lambda: _save_with_the_pool_taken(crowded)
    finally:
        crowded.close()
    if backend.name in SERVERS:
        killed = _echoing(backend.url, backend.table_name)
        try:
            yield "killed-twice", lambda: _save_killed_on_both_attempts(killed, backend)
        finally:
            killed.delete_tokens()
            killed.close()
        scheme = "postgresql" if backend.name == "postgresql" else "mysql"
        away = _echoing(
            f"{scheme}://zoho:{URL_PASSWORD}@127.0.0.1:1/tokens",
            backend.table_name,
            connect_args={"connect_timeout": 1},
        )
        try:
            yield "unreachable", lambda: away.save_token(secret_token())
        finally:
            away.close()


def _lose_the_insert_race_twice(store: SQLAlchemyTokenStore, backend: Backend) -> None:
    if backend.name == "sqlite_memory":
        # One in-memory connection: the race is run by a trigger instead.
        raise_in_memory = (
            f"CREATE TEMP TRIGGER refuse BEFORE INSERT ON {backend.table_name} "
            f"BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: user_name'); END"
        )
        with store.engine.connect() as conn:
            conn.exec_driver_sql(f"DELETE FROM {backend.table_name}")  # noqa: S608
            conn.exec_driver_sql(raise_in_memory)
        try:
            store.save_token(secret_token("row-other"))
        finally:
            with store.engine.connect() as conn:
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS refuse")
        return

    other = SQLAlchemyTokenStore(backend.url, table_name=backend.table_name)

    def race(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb, where = statement.split(None, 1)[0].upper(), statement.rsplit("WHERE", 1)[-1]
        if verb == "UPDATE" and "user_name" in where:
            other.delete_tokens()
        elif verb == "INSERT":
            other.save_token(make_token(user=SECRET_USER, access="1000.other"))

    event.listen(store.engine, "before_cursor_execute", race)
    try:
        store.save_token(secret_token("row-other"))
    finally:
        event.remove(store.engine, "before_cursor_execute", race)
        other.close()


def _save_with_the_pool_taken(store: SQLAlchemyTokenStore) -> None:
    with store.engine.connect():
        store.save_token(secret_token())


def _save_killed_on_both_attempts(store: SQLAlchemyTokenStore, backend: Backend) -> None:
    killer = SessionKiller(store, backend.name)

    def kill(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.split(None, 1)[0].upper() in ("UPDATE", "INSERT"):
            killer.kill_all()

    event.listen(store.engine, "before_cursor_execute", kill)
    try:
        store.save_token(secret_token())
    finally:
        event.remove(store.engine, "before_cursor_execute", kill)
        killer.close()


EXPECTED_ERRORS = {
    "nul": InvalidTokenError,
    "bad-type": InvalidTokenError,
    "bad-expiry": InvalidTokenError,
    "too-long": InvalidTokenError,
    "no-credential": InvalidTokenError,
    "integrity": DatabaseError,
    "schema-missing": SchemaMissingError,
    "pool-timeout": DatabaseError,
    "killed-twice": DatabaseError,
    "unreachable": DatabaseError,
}


def test_no_error_path_puts_a_secret_in_a_log_an_error_or_a_repr(
    backend: Backend,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    reached: dict[str, str] = {}
    texts: list[str] = []
    for name, call in _error_paths(backend):
        with pytest.raises(TokenStoreError) as info:
            call()
        reached[name] = type(info.value).__name__
        assert info.value.code == "TOKEN_STORE"
        texts += every_text_of(info.value)
    texts.append(logged_text(every_log, capsys.readouterr()))

    unreachable_here = {
        "sqlite": {"killed-twice", "unreachable"},
        "sqlite_memory": {"killed-twice", "unreachable", "schema-missing"},
    }.get(backend.name, set())
    expected = {
        name: kind.__name__
        for name, kind in EXPECTED_ERRORS.items()
        if name not in unreachable_here
    }
    assert reached == expected
    # The paths really ran with DEBUG logging on: statements were echoed with
    # their parameters hidden, and result columns were logged.
    assert "[SQL parameters hidden due to hide_parameters=True]" in texts[-1]
    assert "Col (" in texts[-1]
    assert leaked(" ".join(SECRETS.values())) == sorted(SECRETS)  # the scan itself works
    assert [leaked(t) for t in texts if leaked(t)] == []
    record_property("secret_scan_error_paths", len(reached))


def test_a_token_the_driver_cannot_encode_is_refused_without_quoting_its_secrets(
    backend: Backend, store: SQLAlchemyTokenStore
) -> None:
    # A lone surrogate cannot be encoded as UTF-8. The driver's
    # UnicodeEncodeError would quote the value in its repr (PyMySQL's, the
    # whole statement with every token value in it): the store refuses the
    # token before any statement.
    token = secret_token(client_id="1000.\udc80")
    with pytest.raises(InvalidTokenError) as info:
        store.save_token(token)
    assert info.value.error_message == (
        "save_token: client_id is not valid Unicode (it holds a lone surrogate)"
    )
    assert [leaked(t) for t in every_text_of(info.value) if leaked(t)] == []
