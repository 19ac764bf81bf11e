"""Every store under test behind one interface: one :class:`OpCall` per operation.

A contender is one store on one backend. This store (with and without
encryption at rest), the SDK's ``DBStore``
and its ``FileStore`` share the SDK's ``TokenStore`` interface, so
:class:`TokenStoreContender` runs every operation through exactly the calls
the SDK makes. The raw DBAPI floor (floor.py) runs the same operations as
plain SQL.

An :class:`OpCall` splits an iteration into an untimed ``prepare`` (build the
SDK's token), the timed ``run`` (the store call alone) and an untimed
``check`` (was the right row found; undo an insert), so that only the store
is timed, and every timed call is known to have done its job.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import URL, event
from sqlalchemy.pool import QueuePool
from zohocrmsdk.src.com.zoho.api.authenticator.store.db_store import DBStore
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore

from bench.dataset import TableState, row_id, user_name
from bench.settings import Operation
from zoho_token_store import SQLAlchemyTokenStore

__all__ = [
    "Contender",
    "DBStoreContender",
    "EncryptedStoreContender",
    "FileStoreContender",
    "OpCall",
    "StoreContender",
    "TokenStoreContender",
    "mysql_connector_missing",
]

# New users for inserts get numbers no filled row has, unique within the process.
_new_users = itertools.count(1)


@dataclass(frozen=True)
class OpCall:
    """One operation of one contender, split into untimed and timed parts.

    ``prepare(i)`` builds iteration ``i``'s argument; ``run(arg)`` is the call
    that is timed; ``check(arg, result)`` verifies the result and undoes
    whatever the call left behind (an inserted row).
    """

    prepare: Callable[[int], Any]
    run: Callable[[Any], Any]
    check: Callable[[Any, Any], None]


@dataclass(frozen=True)
class ClientCounts:
    """What a contender's own client sent so far, where it can tell.

    ``statements`` counts SQL statements plus DBAPI commits and rollbacks;
    ``connects`` counts new DBAPI connections. ``None``: not observable.
    """

    statements: int | None = None
    connects: int | None = None


class Contender(abc.ABC):
    """One store on one backend, e.g. ``store/postgresql`` or ``DBStore/mariadb``."""

    family: ClassVar[str]

    def __init__(self, backend: str, state: TableState) -> None:
        self.backend = backend
        self.state = state

    @property
    def name(self) -> str:
        return f"{self.family}/{self.backend}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abc.abstractmethod
    def call(self, operation: Operation, keys: Sequence[int], verify: bool) -> OpCall:
        """The operation on rows ``keys[i % len(keys)]``; ``verify`` reads saves back."""

    def counts(self) -> ClientCounts:
        """Client-side counters; see :class:`ClientCounts`."""
        return ClientCounts()

    def server_statements(self) -> int | None:
        """The server's own count of statements this contender's sessions ran, if it keeps one.

        MariaDB's session ``Questions``, read on the contender's persistent
        connections; ``None`` elsewhere.
        """
        return None

    def close(self) -> None:  # noqa: B027  # most contenders hold nothing
        """Release connections and files."""


def _key(keys: Sequence[int], i: int) -> int:
    return keys[i % len(keys)]


class TokenStoreContender(Contender):
    """A store behind the SDK's ``TokenStore`` interface, called as the SDK calls it."""

    def __init__(self, backend: str, state: TableState, store: TokenStore) -> None:
        super().__init__(backend, state)
        self.store = store

    def call(self, operation: Operation, keys: Sequence[int], verify: bool) -> OpCall:
        store, state = self.store, self.state
        if operation is Operation.FIND_USER:
            return self._find(keys, state.by_user)
        if operation is Operation.FIND_REFRESH:
            return self._find(keys, state.by_refresh)
        if operation is Operation.FIND_ACCESS:
            return self._find(keys, state.by_access)
        if operation is Operation.FIND_BY_ID:
            return OpCall(
                prepare=lambda i: row_id(_key(keys, i)),
                run=store.find_token_by_id,
                check=_check_found_by_id,
            )
        if operation is Operation.SAVE_UPDATE:
            return OpCall(
                prepare=lambda i: state.refreshed(_key(keys, i)),
                run=store.save_token,
                check=self._check_update if verify else _nothing,
            )
        if operation is Operation.SAVE_INSERT:
            return OpCall(
                prepare=lambda _i: TableState.granted(next(_new_users)),
                run=store.save_token,
                check=lambda token, _result: self._undo_insert(token, verify),
            )
        if operation is Operation.GET_TOKENS:
            return OpCall(
                prepare=_nothing_arg, run=lambda _arg: store.get_tokens(), check=self._count
            )
        raise ValueError(operation)

    def _find(self, keys: Sequence[int], build: Callable[[int], Any]) -> OpCall:
        def prepare(i: int) -> tuple[int, Any]:
            k = _key(keys, i)
            return k, build(k)

        def check(arg: tuple[int, Any], result: Any) -> None:
            k, _token = arg
            assert result is not None, f"{self.name}: row {k} not found"
            assert result.get_id() == row_id(k), f"{self.name}: found {result.get_id()}, not {k}"

        return OpCall(prepare=prepare, run=lambda arg: self.store.find_token(arg[1]), check=check)

    def _check_update(self, token: Any, _result: Any) -> None:
        stored = self.store.find_token_by_id(token.get_id())
        assert stored is not None, f"{self.name}: updated row {token.get_id()} is gone"
        assert stored.get_access_token() == token.get_access_token(), f"{self.name}: not saved"
        assert stored.get_refresh_token() == token.get_refresh_token(), f"{self.name}: blanked"

    def _undo_insert(self, token: Any, verify: bool) -> None:
        new_id = token.get_id()
        assert new_id, f"{self.name}: save_token gave the new token no id"
        if verify:
            stored = self.store.find_token_by_id(new_id)
            assert stored is not None, f"{self.name}: inserted row {new_id} not found"
        self.store.delete_token(new_id)

    def _count(self, _arg: Any, result: Any) -> None:
        assert len(result) == self.state.rows, f"{self.name}: {len(result)} tokens"


def _nothing(_arg: Any, _result: Any) -> None:
    return None


def _nothing_arg(_i: int) -> None:
    return None


def _check_found_by_id(wanted: str, result: Any) -> None:
    assert result is not None, f"id {wanted} not found"
    assert result.get_id() == wanted
    assert result.get_user_signature().get_name() == user_name(int(wanted))


class StoreContender(TokenStoreContender):
    """This package's ``SQLAlchemyTokenStore``, with its engine as the store builds it.

    With ``counting``, SQLAlchemy events count every statement
    (``before_cursor_execute``) and new connection (pool ``connect``), and the
    dialect's DBAPI commit and rollback calls are counted too, including a
    pool's reset-on-return rollback.
    """

    family = "store"

    def __init__(
        self,
        backend: str,
        state: TableState,
        url: URL,
        table: str,
        counting: bool,
        encryption_keys: Sequence[str] | None = None,
    ) -> None:
        self.sql_store = SQLAlchemyTokenStore(
            url, table_name=table, encryption_keys=encryption_keys
        )
        super().__init__(backend, state, self.sql_store)
        self._statements = 0
        self._connects = 0
        self._counting = counting
        if counting:
            self._listen()

    def _listen(self) -> None:
        engine = self.sql_store.engine

        def on_statement(*_args: Any) -> None:
            self._count_statement()

        def on_connect(*_args: Any) -> None:
            self._connects += 1

        event.listen(engine, "before_cursor_execute", on_statement)
        event.listen(engine.pool, "connect", on_connect)
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback"):
            original = getattr(dialect, name)

            def counted(dbapi_connection: Any, _original: Any = original) -> None:
                _original(_CountingConnection(dbapi_connection, self._count_statement))

            setattr(dialect, name, counted)

    def _count_statement(self) -> None:
        self._statements += 1

    def counts(self) -> ClientCounts:
        if not self._counting:
            return ClientCounts()
        return ClientCounts(statements=self._statements, connects=self._connects)

    def server_statements(self) -> int | None:
        if self.backend != "mariadb":
            return None
        pool = self.sql_store.engine.pool
        with self.sql_store.engine.connect() as conn:
            # One pooled connection serves this single-threaded benchmark; the
            # session counter below is that connection's.
            assert isinstance(pool, QueuePool) and pool.checkedin() == 0, "more than one connection"
            return session_questions(conn.connection.dbapi_connection)

    def close(self) -> None:
        self.sql_store.close()


class EncryptedStoreContender(StoreContender):
    """This store with encryption at rest on, as an application creates it.

    ``SQLAlchemyTokenStore(url, table_name=..., encryption_keys=[key])`` on a
    table of its own whose rows are sealed under ``key`` (tables.py): a
    lookup by token goes through the HMAC digest column and decrypts the row
    it finds; a save seals the new values.
    """

    family = "store+enc"

    def __init__(
        self,
        backend: str,
        state: TableState,
        url: URL,
        table: str,
        counting: bool,
        encryption_keys: Sequence[str],
    ) -> None:
        if not encryption_keys:
            raise ValueError("an encrypted store needs its keys")
        super().__init__(backend, state, url, table, counting, encryption_keys)


class _CountingConnection:
    """A DBAPI connection seen by the dialect's ``do_commit`` / ``do_rollback``.

    Counts the commits and rollbacks that reach the driver: the dialect skips
    the rollback of a connection in autocommit mode
    (``skip_autocommit_rollback``), and that skip is not counted.
    """

    def __init__(self, connection: Any, count: Callable[[], None]) -> None:
        self._connection = connection
        self._count = count

    def commit(self) -> None:
        self._count()
        self._connection.commit()

    def rollback(self) -> None:
        self._count()
        self._connection.rollback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def session_questions(dbapi_connection: Any) -> int:
    """MariaDB's ``Questions`` for this session: statements its client sent."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
        row = cursor.fetchone()
    finally:
        cursor.close()
    return int(row[1])


class DBStoreContender(TokenStoreContender):
    """The SDK's ``DBStore`` (mysql-connector-python) on MariaDB, in the SDK's own table.

    It opens a new connection for every call, as it is written to.
    """

    family = "DBStore"

    def __init__(self, state: TableState, url: URL, table: str) -> None:
        store = DBStore(
            host=url.host or "127.0.0.1",
            database_name=url.database,
            user_name=url.username or "root",
            password=url.password or "",
            port_number=url.port or 3306,
            table_name=table,
        )
        super().__init__("mariadb", state, store)


class FileStoreContender(TokenStoreContender):
    """The SDK's ``FileStore``: every call reads (and a save rewrites) the whole CSV file."""

    family = "FileStore"

    def __init__(self, state: TableState, path: str) -> None:
        super().__init__("csv", state, FileStore(path))


def mysql_connector_missing() -> str | None:
    """Why the SDK's DBStore cannot run here, or ``None`` when it can."""
    try:
        import mysql.connector  # noqa: F401
    except ImportError:
        return (
            "mysql-connector-python is not installed (the SDK's DBStore needs it): "
            "pip install -e '.[bench]'"
        )
    return None
