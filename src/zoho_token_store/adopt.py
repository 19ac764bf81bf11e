"""Adopting a token table made by the SDK's ``DBStore``, in place.

Migration 0001 calls :func:`adopt_dbstore_table` when the token table already
exists (the migration only runs while no revision is recorded for it). The
table must have exactly the columns of the SDK's DBStore DDL, with or without
``api_domain`` (older SDKs). Every token is kept, converted to this store's
schema:

- a user's duplicate rows are merged first (records.merge_duplicates: the row
  that expires last is kept, gaps filled from the others);
- ``expiry_time`` becomes a BIGINT of epoch ms; a value that is not a number
  becomes NULL, and is reported;
- the token digests are computed, an empty id gets a new one;
- the indexes, the unique user name and the timestamps are those of a fresh
  table, because the new table is made by the migration's own code.

The rows are copied into a new table, which then replaces the old one. On
PostgreSQL and SQLite the whole exchange is one transaction. MySQL commits
every DDL statement by itself, so there the old table is left untouched until
one atomic ``RENAME TABLE`` swaps the two. Either way, a failure leaves the
DBStore table as it was.

Merges and unreadable expiries are logged at WARNING through the alembic
logger, and the :class:`AdoptionReport` is left in the Alembic config's
``attributes`` under :data:`REPORT_KEY`, where ``zoho-token-store upgrade``
finds it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, column, insert, inspect, select, table
from sqlalchemy import exc as sa_exc

from zoho_token_store.errors import TokenStoreError
from zoho_token_store.mapping import digest
from zoho_token_store.records import FIELDS, Merge, Record, merge_duplicates

__all__ = [
    "REPORT_KEY",
    "AdoptionError",
    "AdoptionReport",
    "adopt_dbstore_table",
    "table_exists",
]

LOGGER = logging.getLogger("alembic.runtime.migration")
REPORT_KEY = "zoho_token_store.adoption"

_WITHOUT_API_DOMAIN = frozenset(FIELDS) - {"api_domain"}
_BATCH = 1000


class AdoptionError(TokenStoreError):
    """The existing table cannot be adopted; nothing was changed."""


@dataclass(frozen=True)
class AdoptionReport:
    """What adopting one DBStore table did."""

    table: str
    rows_read: int
    rows_kept: int
    merges: tuple[Merge, ...]
    bad_expiries: tuple[Record, ...]
    new_ids: tuple[tuple[Record, str], ...]
    added_api_domain: bool

    def summary(self) -> str:
        return (
            f"adopted the DBStore table {self.table!r}: {self.rows_read} rows read, "
            f"{self.rows_kept} kept; duplicate rows of {len(self.merges)} user(s) merged, "
            f"{len(self.bad_expiries)} unreadable expiry time(s) set to NULL"
        )

    def warnings(self) -> list[str]:
        """One line per merge, per expiry set to NULL and per id given anew."""
        lines = [f"merged duplicate rows: {merge.describe()}" for merge in self.merges]
        lines += [
            f"expiry_time of {r.where} (user {r.user_name!r}) is not epoch milliseconds: "
            f"{(r.expiry_time or '')[:24]!r} set to NULL"
            for r in self.bad_expiries
        ]
        lines += [
            f"{r.where} (user {r.user_name!r}): the id was empty; now {new_id!r}"
            for r, new_id in self.new_ids
        ]
        if self.added_api_domain:
            lines.append("the table had no api_domain column (an older SDK): added, empty")
        return lines


def table_exists(conn: Connection, table_name: str) -> bool:
    """True when ``table_name`` exists in the connection's default schema."""
    return bool(inspect(conn).has_table(table_name))


def adopt_dbstore_table(
    conn: Connection, table_name: str, create_table: Callable[[str], None]
) -> AdoptionReport:
    """Convert the DBStore table ``table_name`` to this store's schema, keeping every token.

    ``create_table(name)`` creates an empty table of the target schema, with
    its indexes, under ``name``; the migration passes its own. Raises
    :class:`AdoptionError`, having changed nothing, for a table of another
    shape.
    """
    present = {c["name"].lower() for c in inspect(conn).get_columns(table_name)}
    if present not in (frozenset(FIELDS), _WITHOUT_API_DOMAIN):
        raise AdoptionError(_shape_message(table_name, present))
    work, old = f"{table_name}_adopting", f"{table_name}_dbstore_old"
    for name in (work, old):
        if table_exists(conn, name):
            raise AdoptionError(
                f"cannot adopt the DBStore table {table_name!r}: a table {name!r} exists, "
                "probably left by an interrupted adoption; check it, drop it, and upgrade again"
            )
    records = _read(conn, table_name, sorted(present))
    kept, merges = merge_duplicates(records)
    new_ids: list[tuple[Record, str]] = []
    rows = []
    for record in kept:
        if record.id is None or not record.id.strip():
            new_ids.append((record, str(uuid.uuid4())))
            rows.append(_row(record, new_ids[-1][1]))
        else:
            rows.append(_row(record, record.id))
    report = AdoptionReport(
        table=table_name,
        rows_read=len(records),
        rows_kept=len(rows),
        merges=tuple(merges),
        bad_expiries=tuple(r for r in kept if r.bad_expiry),
        new_ids=tuple(new_ids),
        added_api_domain="api_domain" not in present,
    )
    if conn.dialect.name in ("mysql", "mariadb"):
        _swap_mysql(conn, table_name, work, old, rows, create_table)
    else:
        with _atomic(conn):
            create_table(work)
            _insert(conn, work, rows)
            _execute(conn, f"DROP TABLE {_quote(conn, table_name)}")
            _execute(conn, f"ALTER TABLE {_quote(conn, work)} RENAME TO {_quote(conn, table_name)}")
            _rename_primary_key(conn, table_name)
    LOGGER.info("%s", report.summary())
    for line in report.warnings():
        LOGGER.warning("%s: %s", table_name, line)
    return report


def _shape_message(table_name: str, present: set[str]) -> str:
    missing = sorted(_WITHOUT_API_DOMAIN - present)
    extra = sorted(present - set(FIELDS))
    details = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(extra)}" if extra else "",
        )
        if part
    )
    return (
        f"the table {table_name!r} exists but is not a table of the SDK's DBStore "
        f"({details}), and no revision is recorded for it: upgrade changed nothing. "
        "Choose another table name, or move that table away"
    )


def _read(conn: Connection, table_name: str, columns: Sequence[str]) -> list[Record]:
    source = table(table_name, *(column(name) for name in columns))
    query = select(source).order_by(source.c.id)
    return [Record.from_values(f"id {row['id']!r}", row) for row in conn.execute(query).mappings()]


def _row(record: Record, row_id: str) -> dict[str, Any]:
    values: dict[str, Any] = record.values()
    values["id"] = row_id
    values["expiry_time"] = record.expiry_ms
    for name in ("refresh_token", "access_token", "grant_token"):
        value = values[name]
        values[f"{name}_digest"] = digest(value) if value is not None else None
    return values


def _insert(conn: Connection, table_name: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    target = table(table_name, *(column(name) for name in rows[0]))
    for start in range(0, len(rows), _BATCH):
        conn.execute(insert(target), rows[start : start + _BATCH])


def _swap_mysql(
    conn: Connection,
    table_name: str,
    work: str,
    old: str,
    rows: list[dict[str, Any]],
    create_table: Callable[[str], None],
) -> None:
    # Each DDL statement commits by itself here: build the new table beside
    # the old one, and only then exchange them in one atomic RENAME.
    try:
        create_table(work)
        _insert(conn, work, rows)
        _execute(
            conn,
            f"RENAME TABLE {_quote(conn, table_name)} TO {_quote(conn, old)}, "
            f"{_quote(conn, work)} TO {_quote(conn, table_name)}",
        )
    except BaseException:
        with suppress(sa_exc.SQLAlchemyError):
            _execute(conn, f"DROP TABLE IF EXISTS {_quote(conn, work)}")
        raise
    _execute(conn, f"DROP TABLE {_quote(conn, old)}")


@contextmanager
def _atomic(conn: Connection) -> Iterator[None]:
    """One database transaction around the block, also on an autocommit connection.

    Alembic wraps a migration in a transaction, but on a connection in
    autocommit mode (as the store's engines are) that transaction is not sent
    to the database. Then the block gets one of its own.
    """
    dbapi_connection = conn.connection.dbapi_connection
    try:
        autocommit = dbapi_connection is not None and conn.dialect.detect_autocommit_setting(
            dbapi_connection
        )
    except NotImplementedError:
        autocommit = False
    if not autocommit:
        yield
        return
    _execute(conn, "BEGIN")
    try:
        yield
    except BaseException:
        with suppress(sa_exc.SQLAlchemyError):
            _execute(conn, "ROLLBACK")
        raise
    _execute(conn, "COMMIT")


def _rename_primary_key(conn: Connection, table_name: str) -> None:
    # PostgreSQL names a primary key after its table, and a renamed table keeps
    # the old name: give it the one a fresh table has.
    if conn.dialect.name != "postgresql":
        return
    name = inspect(conn).get_pk_constraint(table_name).get("name")
    wanted = f"{table_name}_pkey"
    if name and name != wanted:
        _execute(
            conn,
            f"ALTER TABLE {_quote(conn, table_name)} RENAME CONSTRAINT "
            f"{_quote(conn, name)} TO {_quote(conn, wanted)}",
        )


def _quote(conn: Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


def _execute(conn: Connection, statement: str) -> None:
    conn.exec_driver_sql(statement)
