"""The raw DBAPI floor: what each operation costs with no store around it.

Each backend's floor holds two persistent connections of its own driver
(sqlite3, psycopg 3, PyMySQL), opened once, with one reused cursor each:

- a reader in autocommit mode: a lookup is one indexed, parameterized SELECT
  on this store's own table and indexes (``fetchone``), by user name, by
  token digest (the SHA-256 is computed in the timed call, as the store must)
  or by id; ``get_tokens`` is one SELECT of every row (``fetchall``, no
  token objects built);
- a writer in the driver's default transactional mode: a save is an UPDATE
  (by user name, of the new access token, its digest and expiry) or an
  INSERT, then ``commit()``. psycopg sends BEGIN before the UPDATE; PyMySQL
  and sqlite3 begin implicitly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]  # no stubs in the dev extras
from sqlalchemy import URL, MetaData

from bench.contenders import ClientCounts, Contender, OpCall, session_questions
from bench.dataset import (
    API_DOMAIN,
    CLIENT_ID,
    CLIENT_SECRET,
    FAR_EXPIRY_MS,
    REDIRECT_URL,
    TableState,
    refresh_token,
    row_id,
    user_name,
)
from bench.settings import Operation
from zoho_token_store.mapping import digest
from zoho_token_store.models import token_table
from zoho_token_store.records import FIELDS

__all__ = ["FloorContender", "connect_floor"]

_INSERT_COLUMNS = (
    *FIELDS,
    "refresh_token_digest",
    "access_token_digest",
    "grant_token_digest",
    "issued_at",
)


def connect_floor(
    backend: str, *, url: URL | None = None, path: Path | None = None
) -> Callable[[bool], Any]:
    """A function that opens one DBAPI connection to the backend, in autocommit mode or not."""
    if backend == "sqlite":
        assert path is not None

        def sqlite(autocommit: bool) -> Any:
            conn = sqlite3.connect(path, isolation_level=None if autocommit else "DEFERRED")
            conn.execute("PRAGMA busy_timeout = 30000")
            return conn

        return sqlite
    assert url is not None
    if backend == "postgresql":
        return lambda autocommit: psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=autocommit,
        )
    if backend == "mariadb":
        return lambda autocommit: pymysql.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            database=url.database,
            charset="utf8mb4",
            autocommit=autocommit,
        )
    raise ValueError(backend)


class FloorContender(Contender):
    """The floor on one backend; see the module docstring for exactly what it runs."""

    family = "floor"

    def __init__(
        self, backend: str, state: TableState, table: str, connect: Callable[[bool], Any]
    ) -> None:
        super().__init__(backend, state)
        self._reader = connect(True)
        self._writer = connect(False)
        self._read = self._reader.cursor()
        self._write = self._writer.cursor()
        self._statements = 0
        mark = "?" if backend == "sqlite" else "%s"
        columns = ", ".join(column.name for column in token_table(MetaData(), table).c)
        select = f"SELECT {columns} FROM {table} WHERE "  # noqa: S608  # our own table name
        self._by = {
            column: select + f"{column} = {mark}"
            for column in ("user_name", "refresh_token_digest", "access_token_digest", "id")
        }
        self._all = f"SELECT {columns} FROM {table} ORDER BY created_at, id"  # noqa: S608
        self._update = (
            f"UPDATE {table} SET access_token = {mark}, access_token_digest = {mark}, "  # noqa: S608
            f"expiry_time = {mark} WHERE user_name = {mark}"
        )
        marks = ", ".join([mark] * len(_INSERT_COLUMNS))
        self._insert = f"INSERT INTO {table} ({', '.join(_INSERT_COLUMNS)}) VALUES ({marks})"  # noqa: S608
        self._delete = f"DELETE FROM {table} WHERE id = {mark}"  # noqa: S608

    def call(self, operation: Operation, keys: Sequence[int], verify: bool) -> OpCall:
        state = self.state

        def key(i: int) -> int:
            return keys[i % len(keys)]

        if operation is Operation.FIND_USER:
            return self._lookup(keys, "user_name", lambda k: user_name(k), hashed=False)
        if operation is Operation.FIND_REFRESH:
            return self._lookup(keys, "refresh_token_digest", refresh_token, hashed=True)
        if operation is Operation.FIND_ACCESS:
            return self._lookup(keys, "access_token_digest", state.access_token, hashed=True)
        if operation is Operation.FIND_BY_ID:
            return self._lookup(keys, "id", row_id, hashed=False)
        if operation is Operation.SAVE_UPDATE:
            return OpCall(
                prepare=lambda i: (key(i), state.new_access_token(key(i))),
                run=self._save_update,
                check=self._check_update if verify else _nothing,
            )
        if operation is Operation.SAVE_INSERT:
            counter = iter(range(1, 1 << 62))
            return OpCall(
                prepare=lambda _i: f"f{next(counter):09d}",
                run=self._save_insert,
                check=self._undo_insert,
            )
        if operation is Operation.GET_TOKENS:
            return OpCall(prepare=_nothing_arg, run=self._get_all, check=self._count)
        raise ValueError(operation)

    # Timed calls ----------------------------------------------------------------------

    def _lookup(
        self, keys: Sequence[int], column: str, value: Callable[[int], str], *, hashed: bool
    ) -> OpCall:
        query, cursor = self._by[column], self._read

        def prepare(i: int) -> tuple[int, str]:
            k = keys[i % len(keys)]
            return k, value(k)

        def run(arg: tuple[int, str]) -> Any:
            self._statements += 1
            cursor.execute(query, (digest(arg[1]) if hashed else arg[1],))
            return cursor.fetchone()

        def check(arg: tuple[int, str], row: Any) -> None:
            assert row is not None, f"{self.name}: row {arg[0]} not found"
            assert row[0] == row_id(arg[0]), f"{self.name}: found {row[0]}, not {arg[0]}"

        return OpCall(prepare=prepare, run=run, check=check)

    def _save_update(self, arg: tuple[int, str]) -> int:
        k, access = arg
        self._statements += 2
        self._write.execute(self._update, (access, digest(access), FAR_EXPIRY_MS + k, user_name(k)))
        updated: int = self._write.rowcount
        self._writer.commit()
        return updated

    def _save_insert(self, new_id: str) -> int:
        refresh, access = f"1000.refresh.{new_id}", f"1000.access.{new_id}"
        grant = f"1000.grant.{new_id}"
        values = (
            new_id,
            f"{new_id}@floor.example.com",
            CLIENT_ID,
            CLIENT_SECRET,
            refresh,
            access,
            grant,
            FAR_EXPIRY_MS,
            REDIRECT_URL,
            API_DOMAIN,
            digest(refresh),
            digest(access),
            digest(grant),
            FAR_EXPIRY_MS - 3_600_000,
        )
        self._statements += 2
        self._write.execute(self._insert, values)
        inserted: int = self._write.rowcount
        self._writer.commit()
        return inserted

    def _get_all(self, _arg: None) -> list[Any]:
        self._statements += 1
        self._read.execute(self._all)
        return list(self._read.fetchall())

    # Untimed checks ---------------------------------------------------------------------

    def _check_update(self, arg: tuple[int, str], updated: int) -> None:
        assert updated == 1, f"{self.name}: updated {updated} rows"
        self._read.execute(self._by["id"], (row_id(arg[0]),))
        row = self._read.fetchone()
        assert row is not None
        assert row[5] == arg[1], f"{self.name}: access token not saved"

    def _undo_insert(self, new_id: str, inserted: int) -> None:
        assert inserted == 1, f"{self.name}: inserted {inserted} rows"
        self._write.execute(self._delete, (new_id,))
        self._writer.commit()

    def _count(self, _arg: None, rows: list[Any]) -> None:
        assert len(rows) == self.state.rows, f"{self.name}: {len(rows)} rows"

    # Counters ---------------------------------------------------------------------------

    def counts(self) -> ClientCounts:
        # Both connections were opened in __init__; a persistent floor opens no more.
        return ClientCounts(statements=self._statements, connects=2)

    def server_statements(self) -> int | None:
        if self.backend != "mariadb":
            return None
        return session_questions(self._reader) + session_questions(self._writer)

    def close(self) -> None:
        for cursor in (self._read, self._write):
            cursor.close()
        for conn in (self._reader, self._writer):
            conn.close()


def _nothing(_arg: Any, _result: Any) -> None:
    return None


def _nothing_arg(_i: int) -> None:
    return None
