"""Reading and deleting rows of a token table, for operators: what the command line runs.

The store's own methods serve the SDK; an operator also wants the timestamps,
exact counts of what was deleted, and a selection by expiry. Times are taken
from the database's clock, as the store's refresh decisions are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, delete, func, inspect, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import RowMapping

from zoho_token_store import migrate
from zoho_token_store.clock import db_epoch_ms
from zoho_token_store.errors import SchemaMissingError, wrap_database_error
from zoho_token_store.models import token_table

__all__ = ["StoredToken", "TokenTable"]

T = TypeVar("T")
_CHUNK = 500


@dataclass(frozen=True)
class StoredToken:
    """One row of the token table. The repr shows no secret."""

    id: str
    user_name: str | None
    client_id: str | None
    client_secret: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    access_token: str | None = field(repr=False)
    grant_token: str | None = field(repr=False)
    expiry_time: int | None
    redirect_url: str | None
    api_domain: str | None
    issued_at: int | None
    refresh_lease_until: int | None
    created_at: datetime | None
    updated_at: datetime | None


class TokenTable:
    """Operator access to the token table ``table_name`` on ``engine``.

    Every read names all of the package's columns, so on a table that is not
    a token table (a wrong ``--table``) it fails with ``SchemaMissingError``.
    A DELETE names only ``id`` and ``expiry_time``, which another
    application's table may well have: :meth:`delete` and :meth:`delete_all`
    run :meth:`check` first, so such a table is refused before any row of it
    is touched.
    """

    def __init__(self, engine: Engine, table_name: str) -> None:
        self.engine = engine
        self.table = token_table(MetaData(), table_name)
        self._checked = False

    def tokens(self, *, expired_before: int | None = None) -> tuple[list[StoredToken], int]:
        """Every token (or those expired before ``expired_before`` ms), and the database's now."""
        table = self.table
        query = select(table).order_by(table.c.user_name, table.c.id)
        if expired_before is not None:
            query = query.where(table.c.expiry_time < expired_before)

        def work(conn: Connection) -> tuple[list[StoredToken], int]:
            offset = _naive_offset(conn)
            rows = conn.execute(query).mappings().all()
            return [_stored(row, offset) for row in rows], _now(conn)

        return self.run("list", work)

    def token(self, id: str) -> tuple[StoredToken | None, int]:
        """The token with this id, or ``None``; and the database's now."""
        table = self.table

        def work(conn: Connection) -> tuple[StoredToken | None, int]:
            offset = _naive_offset(conn)
            row = conn.execute(select(table).where(table.c.id == id)).mappings().first()
            return (_stored(row, offset) if row is not None else None), _now(conn)

        return self.run("show", work)

    def now(self) -> int:
        """The database's clock, in epoch ms."""
        return self.run("now", _now)

    def ids_of_user(self, user_name: str) -> list[str]:
        table = self.table
        query = select(table.c.id).where(table.c.user_name == user_name)
        return self.run("delete", lambda conn: list(conn.execute(query).scalars()))

    def delete(self, ids: Sequence[str], *, expired_before: int | None = None) -> int:
        """Delete the rows with these ids (and, if given, still expired before); return how many.

        Raises ``SchemaMissingError``, deleting nothing, unless the table is a token table.
        """
        self.check("delete")
        table = self.table

        def work(conn: Connection) -> int:
            deleted = 0
            for start in range(0, len(ids), _CHUNK):
                statement = delete(table).where(table.c.id.in_(ids[start : start + _CHUNK]))
                if expired_before is not None:
                    statement = statement.where(table.c.expiry_time < expired_before)
                deleted += conn.execute(statement).rowcount
            return deleted

        return self.run("delete", work)

    def check(self, operation: str) -> None:
        """Raise ``SchemaMissingError`` unless the table exists with every column of the package.

        The message starts with ``operation``. Only the columns are checked, as
        the store checks them before its deletes: a later revision keeps them
        all. Once passed, later calls on this object cost nothing.
        """
        if self._checked:
            return
        query = select(self.table).limit(0)
        self.run(operation, lambda conn: conn.execute(query).all())
        self._checked = True

    def count(self) -> int:
        table = self.table
        query = select(func.count()).select_from(table)
        return int(self.run("count", lambda conn: conn.execute(query).scalar_one()))

    def delete_all(self) -> int:
        """Delete every row; return how many. Refuses a table that is not a token table."""
        self.check("purge")
        table = self.table
        return int(self.run("purge", lambda conn: conn.execute(delete(table)).rowcount))

    def run(self, operation: str, work: Callable[[Connection], T]) -> T:
        """Run ``work``; a missing or outdated table raises ``SchemaMissingError``."""
        try:
            with self.engine.connect() as conn:
                return work(conn)
        except sa_exc.SQLAlchemyError as exc:
            self._raise_if_schema_missing(operation)
            raise wrap_database_error(operation, exc) from exc

    def _raise_if_schema_missing(self, operation: str) -> None:
        name = self.table.name
        try:
            with self.engine.connect() as conn:
                present = inspect(conn).has_table(name)
        except sa_exc.SQLAlchemyError:
            return  # the database itself is the problem: report the first error
        where = self.engine.url.render_as_string(hide_password=True)
        if not present:
            raise SchemaMissingError(
                f"{operation}: the table {name!r} does not exist in {where}; "
                "create it with `zoho-token-store upgrade`"
            )
        try:
            revision = migrate.current(self.engine, table_name=name)
        except sa_exc.SQLAlchemyError:
            return
        if revision is None:
            # Another application's table, or one the SDK's DBStore made:
            # upgrade adopts the latter, and refuses the former untouched.
            raise SchemaMissingError(
                f"{operation}: the table {name!r} in {where} exists but was not created by "
                "these migrations: check --table, or run `zoho-token-store upgrade` to adopt "
                "a table of the SDK's DBStore"
            )
        head = migrate.head()
        if revision != head:
            raise SchemaMissingError(
                f"{operation}: the table {name!r} in {where} is at revision {revision}, and "
                f"this package needs {head}: run `zoho-token-store upgrade`"
            )


def _now(conn: Connection) -> int:
    return int(conn.execute(select(db_epoch_ms())).scalar_one())


def _naive_offset(conn: Connection) -> timedelta:
    """How far the database's naive timestamps are from UTC.

    PostgreSQL returns aware timestamps. SQLite's CURRENT_TIMESTAMP is UTC.
    MySQL's NOW() is in the session's time zone, which a DATETIME forgets.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        return timedelta(0)
    seconds = conn.execute(text("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")).scalar()
    return timedelta(seconds=int(seconds or 0))


def _aware(value: Any, offset: timedelta) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    moment: datetime = value
    if moment.tzinfo is None:
        moment = (moment - offset).replace(tzinfo=timezone.utc)
    return moment


def _stored(row: RowMapping, offset: timedelta) -> StoredToken:
    return StoredToken(
        id=row["id"],
        user_name=row["user_name"],
        client_id=row["client_id"],
        client_secret=row["client_secret"],
        refresh_token=row["refresh_token"],
        access_token=row["access_token"],
        grant_token=row["grant_token"],
        expiry_time=row["expiry_time"],
        redirect_url=row["redirect_url"],
        api_domain=row["api_domain"],
        issued_at=row["issued_at"],
        refresh_lease_until=row["refresh_lease_until"],
        created_at=_aware(row["created_at"], offset),
        updated_at=_aware(row["updated_at"], offset),
    )
