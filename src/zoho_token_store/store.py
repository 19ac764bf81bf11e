"""``SQLAlchemyTokenStore``: the Zoho SDK's ``TokenStore`` on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    RowMapping,
    Select,
    Table,
    bindparam,
    case,
    delete,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.elements import ColumnElement

from zoho_token_store._sdk import OAuthToken, TokenStore
from zoho_token_store.clock import db_epoch_ms, precise_now
from zoho_token_store.crypto import KEYS_ENV_VAR, MIXED, EncryptionError, codec_from
from zoho_token_store.engine import UrlLike, is_memory_sqlite, make_engine, resolve_url
from zoho_token_store.errors import (
    InvalidTokenError,
    SchemaMissingError,
    TokenStoreError,
    wrap_database_error,
)
from zoho_token_store.mapping import (
    SECRET_COLUMNS,
    LookupKey,
    fill_missing,
    read_id,
    read_token,
    to_oauth_token,
)
from zoho_token_store.migrate import schema_problem
from zoho_token_store.models import (
    DEFAULT_TABLE_NAME,
    token_table,
    validate_table_name,
)
from zoho_token_store.refresh import Action, RefreshPolicy

__all__ = ["SQLAlchemyTokenStore"]

T = TypeVar("T")

# Each operation makes at most this many attempts; see _run.
_ATTEMPTS = 2
# A save that keeps losing the insert race makes up to this many: each lost
# race means another worker made progress (it created the row, or deleted and
# created it again), so the next attempt most likely finds the row to update.
_SAVE_RACE_ATTEMPTS = 5
# The expiry given to the caller that must refresh: any past time makes the
# SDK refresh at once.
DUE = "0"


# PostgreSQL's SQLSTATEs and MySQL's error number for "chosen as a deadlock
# victim, try again".
_DEADLOCK_SQLSTATES = frozenset({"40P01", "40001"})
_MYSQL_DEADLOCK = 1213


def _deadlock_victim(exc: sa_exc.DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _DEADLOCK_SQLSTATES:
        return True
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def _left_mid_command(exc: sa_exc.DBAPIError) -> bool:
    # psycopg's state after a session was killed while a command was on the
    # wire: SQLAlchemy does not count it as a disconnect, yet the connection
    # is unusable. It is dropped, and the operation runs again on a new one.
    return "another command is already in progress" in str(exc.orig)


class SQLAlchemyTokenStore(TokenStore):  # type: ignore[misc]  # the SDK is untyped
    """A Zoho CRM SDK token store in any database SQLAlchemy reaches.

    ``url`` is a URL string, a :class:`sqlalchemy.URL` or an existing
    :class:`sqlalchemy.Engine` (whose pool the store then shares). Without
    one, the store reads ``ZOHO_TOKEN_STORE_URL``, then falls back to
    ``sqlite:///zohooauth.db``. ``table_name`` names the token table.
    ``engine_options`` go to :func:`sqlalchemy.create_engine` when the store
    creates the engine. ``refresh`` sets how refreshes are coordinated
    across processes (:class:`~zoho_token_store.refresh.RefreshPolicy`; on by
    default, ``RefreshPolicy(enabled=False)`` turns it off).
    ``encryption_keys`` (else ``ZOHO_TOKEN_STORE_KEYS``, comma-separated)
    turns on encryption at rest: the first key seals, every key opens (see
    crypto.py). A store without keys refuses to save into a table that holds
    encrypted rows, unless ``allow_plaintext`` is set.

    The schema comes from the migrations (``zoho-token-store upgrade``,
    ``alembic upgrade head`` or :func:`zoho_token_store.migrate.upgrade`).
    The one exception is in-memory SQLite (``sqlite://``), which no other
    process can reach: there the store creates the schema itself.

    Every method raises :class:`~zoho_token_store.errors.TokenStoreError`, an
    ``SDKException`` with code ``TOKEN_STORE``, on failure.
    """

    def __init__(
        self,
        url: UrlLike | Engine | None = None,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        engine_options: Mapping[str, Any] | None = None,
        refresh: RefreshPolicy | None = None,
        encryption_keys: Sequence[str] | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        try:
            validate_table_name(table_name)
        except ValueError as exc:
            raise TokenStoreError(str(exc)) from None
        self._engine: Engine
        if isinstance(url, Engine):
            # The app's engine keeps its settings; the store's statements run
            # in autocommit mode on it as on its own engines (see engine.py).
            self._engine = url.execution_options(isolation_level="AUTOCOMMIT")
            self._owns_engine = False
        else:
            self._engine = make_engine(resolve_url(url), **dict(engine_options or {}))
            self._owns_engine = True
        self._table: Table = token_table(MetaData(), table_name)
        self._refresh = refresh if refresh is not None else RefreshPolicy()
        self._codec = codec_from(encryption_keys)
        self._lookups: dict[tuple[str, bool], Select[Any]] = {}
        # A keyless store refuses to write into a table that holds encrypted
        # rows (checked once, at its first save), unless told it may.
        self._plaintext_checked = allow_plaintext or self._codec.key_id is not None
        self._table_checked = False
        if is_memory_sqlite(self._engine.url):
            self._table.metadata.create_all(self._engine)

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"SQLAlchemyTokenStore(url={url!r}, table_name={self._table.name!r})"

    @property
    def engine(self) -> Engine:
        """The engine the store runs on."""
        return self._engine

    @property
    def table(self) -> Table:
        """The token table, as SQLAlchemy Core metadata."""
        return self._table

    def close(self) -> None:
        """Release the store's connections, unless the engine was passed in."""
        if self._owns_engine:
            self._engine.dispose()

    # The SDK's TokenStore interface ------------------------------------------------

    def find_token(self, token: OAuthToken) -> OAuthToken | None:
        """Find the stored row ``token`` refers to, and fill the token from it.

        The row is chosen by :meth:`TokenFields.key`. The token's empty fields
        are filled from the row; when the row holds a later expiry than the
        token (another worker refreshed), the token adopts the stored access
        token and expiry too. Returns ``token`` itself, or ``None`` when no
        row matches or the token names no row.

        With refresh coordination on, the one caller that wins the refresh
        lease gets the token marked as expired, so that the SDK refreshes it
        now (see refresh.py).
        """
        fields = read_token(token, "find_token")
        key = fields.key(self._codec)
        if key is None:
            return None
        found = self._read("find_token", key)
        if found is None:
            return None
        row, due = found
        fill_missing(token, row, self._codec)
        stored_expiry = row["expiry_time"]
        fresher = stored_expiry is not None and (
            fields.expiry_time is None or stored_expiry > fields.expiry_time
        )
        if fresher and row["access_token"] is not None:
            token.set_access_token(self._codec.open(row["access_token"]))
            token.set_expires_in(str(stored_expiry))
        if due:
            token.set_expires_in(DUE)
        return token

    def save_token(self, token: OAuthToken) -> None:
        """Insert or update the row ``token`` refers to, and set its id on the token.

        An update writes only the fields the token carries, so a save never
        blanks a stored refresh token. With no matching row, a new row gets
        the token's id, or a new UUID. A token that carries no access, refresh
        or grant token is refused, and nothing is written.
        """
        fields = read_token(token, "save_token")
        if not fields.has_credential:
            raise InvalidTokenError(
                "save_token: the token carries no access, refresh or grant token"
            )
        # Chosen once, so that a retry after a lost acknowledgement finds the
        # row the first attempt inserted instead of inserting a second one.
        new_id = fields.id or str(uuid.uuid4())
        key = fields.key(self._codec) or LookupKey("id", new_id)
        values = fields.column_values(self._codec)
        if SECRET_COLUMNS & values.keys():
            values["key_id"] = self._key_id_after_write()
        if "expiry_time" in values:
            # A new access token: its lifetime starts now, and any refresh
            # lease on the row is done.
            values.update(issued_at=db_epoch_ms(), refresh_lease_until=None)
        if not self._plaintext_checked:
            self._refuse_plaintext_into_encrypted_table()
        row_id = self._run(
            "save_token", lambda conn: self._upsert(conn, key, new_id, fields.id, values), save=True
        )
        if token.get_id() in (None, ""):
            token.set_id(row_id)

    def delete_token(self, id: str) -> None:
        """Delete the row with this id; an unknown id is not an error."""
        read_id(id, "delete_token")
        self._check_table_before_deleting("delete_token")
        table = self._table
        self._run("delete_token", lambda conn: conn.execute(delete(table).where(table.c.id == id)))

    def get_tokens(self) -> list[OAuthToken]:
        """Every stored token, fully populated, oldest first.

        Rows are ordered by ``created_at``; rows created within one tick of
        its clock (a second on SQLite, a microsecond elsewhere) by rowid on
        SQLite, which is the order they were inserted in, else by id.
        """
        table = self._table
        tie = literal_column("rowid") if self._engine.dialect.name == "sqlite" else table.c.id
        query = select(table).order_by(table.c.created_at, tie)
        rows = self._run("get_tokens", lambda conn: conn.execute(query).mappings().all())
        return [to_oauth_token(row, self._codec) for row in rows]

    def delete_tokens(self) -> None:
        """Delete every row of this store's table, and nothing else."""
        self._check_table_before_deleting("delete_tokens")
        table = self._table
        self._run("delete_tokens", lambda conn: conn.execute(delete(table)))

    def find_token_by_id(self, id: str) -> OAuthToken | None:
        """The stored token with this id, fully populated, or ``None``.

        Refresh coordination applies as for :meth:`find_token`: in steady
        state the SDK reads every token through this method.
        """
        read_id(id, "find_token_by_id")
        found = self._read("find_token_by_id", LookupKey("id", id))
        if found is None:
            return None
        row, due = found
        token = to_oauth_token(row, self._codec)
        if due:
            token.set_expires_in(DUE)
        return token

    # Statements --------------------------------------------------------------------

    def _read(self, operation: str, key: LookupKey) -> tuple[RowMapping, bool] | None:
        """The row ``key`` names, and whether this caller must refresh it now.

        One SELECT in the common case. Only a token that is due costs more:
        one conditional UPDATE to take the lease, or, for a caller that must
        wait for another's refresh, a SELECT every ``poll_interval``. A holder
        that has not saved within ``max_wait`` of this caller's waiting on it
        is taken over: one conditional UPDATE, which one waiter wins.
        """
        policy = self._refresh
        deadline = time.monotonic() + policy.max_wait
        waiting_on: int | None = None  # the lease this caller is waiting on
        while True:
            row = self._run(operation, lambda conn: self._first_row(conn, key))
            if row is None:
                return None
            lease_until = row["refresh_lease_until"]
            action = policy.action(row["expiry_time"], row["issued_at"], lease_until, row["db_now"])
            if action is Action.USE:
                return row, False
            if action is Action.LEASE and self._run(operation, partial(self._lease, row=row)):
                return row, True
            if action is Action.WAIT and lease_until != waiting_on:
                if waiting_on is not None:  # a new holder gets a whole wait too
                    deadline = time.monotonic() + policy.max_wait
                waiting_on = lease_until
            elif action is Action.WAIT and time.monotonic() >= deadline:
                # The holder is slow or gone. Take its lease over, so that one
                # caller refreshes instead of every waiter's SDK at once; the
                # waiters that lose see the winner's lease on their next read.
                if self._run(operation, partial(self._lease, row=row, take_over=True)):
                    return row, True
                continue
            if action is Action.WAIT:
                time.sleep(policy.poll_interval)
            # A lost lease race: read again to see what the winner left.

    def _lease(self, conn: Connection, row: RowMapping, take_over: bool = False) -> bool:
        """Take the refresh lease on ``row``'s token; True for the one caller that wins it.

        One conditional UPDATE, atomic on every backend: it matches only while
        nobody holds a live lease and the token is still the one this caller
        read (a refresh saved in between changes its expiry). With
        ``take_over``, it matches while the lease is still the one this caller
        read, live or not.
        """
        table = self._table
        lease = table.c.refresh_lease_until
        free = (
            lease == row["refresh_lease_until"]
            if take_over
            else or_(lease.is_(None), lease <= db_epoch_ms())
        )
        statement = (
            update(table)
            .where(
                table.c.id == row["id"],
                table.c.expiry_time == row["expiry_time"],
                free,
            )
            .values(refresh_lease_until=db_epoch_ms() + self._refresh.lease_ms)
        )
        return bool(conn.execute(statement).rowcount)

    def _first_row(self, conn: Connection, key: LookupKey) -> RowMapping | None:
        several = bool(key.alternatives)
        params: dict[str, Any] = (
            {"values": list(key.candidates)} if several else {"value": key.value}
        )
        return conn.execute(self._lookup(key.column, several), params).mappings().first()

    def _lookup(self, column_name: str, several: bool) -> Select[Any]:
        """The lookup SELECT by one column, built once per store and reused.

        Building a statement costs more client time than the database spends
        running it: the profile of a lookup showed a quarter of it there.
        """
        cache_key = (column_name, several)
        query = self._lookups.get(cache_key)
        if query is None:
            table = self._table
            column = table.c[column_name]
            condition = (
                column.in_(bindparam("values", expanding=True))
                if several
                else column == bindparam("value")
            )
            query = select(table, db_epoch_ms().label("db_now")).where(condition)
            if column_name not in ("id", "user_name"):
                # Token digests are not unique: pick the same row every time.
                query = query.order_by(table.c.id)
            query = self._lookups[cache_key] = query.limit(1)
        return query

    def _upsert(
        self,
        conn: Connection,
        key: LookupKey,
        new_id: str,
        token_id: str | None,
        values: dict[str, Any],
    ) -> str:
        """Update the row ``key`` names, else insert one as ``new_id``; return the row's id.

        Each statement commits by itself (the store's connections are in
        autocommit mode): an update is one atomic statement, and an insert
        that loses a race to another process's insert of the same user fails
        on the unique index, whereupon :meth:`_run` tries again and updates.
        """
        target: LookupKey | None = key
        if key.column not in ("id", "user_name"):
            found = self._first_row(conn, key)
            target = LookupKey("id", found["id"]) if found is not None else None
        if target is not None:
            row_id = self._update(conn, target, values, token_id)
            if row_id is not None:
                return row_id
        if token_id is not None and key.column != "id":
            # The token came from a row (its id says which) that the key no
            # longer finds: a user name learnt since the row was saved.
            row_id = self._update(conn, LookupKey("id", token_id), values, token_id)
            if row_id is not None:
                return row_id
        if "key_id" in values:
            # A new row holds only what this store sealed.
            values = {**values, "key_id": self._codec.key_id}
        conn.execute(self._table.insert().values(id=new_id, **values))
        return new_id

    def _update(
        self, conn: Connection, target: LookupKey, values: dict[str, Any], token_id: str | None
    ) -> str | None:
        """Update the row ``target`` names; return its id, or ``None`` if there is none.

        When the token already carries an id, that is what is returned: the
        caller only needs an id to give a token that lacks one. A store with
        keys never writes into a row sealed by a key it lacks: that would
        leave the row unreadable to the stores that hold the row's key.
        """
        table = self._table
        matches = table.c[target.column] == target.value
        statement = (
            update(table)
            .where(matches, *self._writable())
            .values(updated_at=precise_now(), **values)
        )
        if conn.dialect.update_returning and target.column != "id":
            row_id: str | None = conn.execute(statement.returning(table.c.id)).scalar_one_or_none()
        elif conn.execute(statement).rowcount:
            # MySQL and MariaDB have no UPDATE ... RETURNING: read the id by
            # the unique user name, and only when the token lacks one. The
            # SDK's saves carry the id the store gave them.
            row_id = target.value if target.column == "id" else token_id
            if row_id is None:
                # None if another worker deleted the row in between: the
                # save then inserts it again.
                row_id = conn.execute(select(table.c.id).where(matches)).scalar_one_or_none()
        else:
            row_id = None
        if row_id is None and self._codec.key_ids:
            foreign = conn.execute(select(table.c.key_id).where(matches).limit(1)).first()
            if foreign is not None:
                raise EncryptionError(
                    f"save_token: the stored row is sealed with key {foreign[0]}, which is not "
                    f"among this store's keys ({', '.join(self._codec.key_ids)}); nothing was "
                    "written"
                )
        return row_id

    def _writable(self) -> tuple[ColumnElement[bool], ...]:
        """The rows this store may write secrets into; every row without keys."""
        if not self._codec.key_ids:
            return ()
        column = self._table.c.key_id
        return (or_(column.is_(None), column.in_((*self._codec.key_ids, MIXED))),)

    def _key_id_after_write(self) -> ColumnElement[str | None]:
        """``key_id`` after an update that writes some secrets with this store's codec.

        The row keeps a single key id only while every secret in it is sealed
        by that key; otherwise it is "mixed", and ``encrypt``/``rotate-key``
        pick it up.
        """
        column = self._table.c.key_id
        current = self._codec.key_id
        if current is None:
            return case((column.is_(None), null()), else_=literal(MIXED))
        return case((column == current, literal(current)), else_=literal(MIXED))

    def _check_table_before_deleting(self, operation: str) -> None:
        # Every other statement names the store's own columns, so on another
        # application's table (a wrong table_name) it fails and is reported as
        # a schema problem. A DELETE by id would run there: before the first
        # one, a SELECT of every column with no rows (once per store) proves
        # the table is the store's, at any newer revision too.
        if self._table_checked:
            return
        probe = select(self._table).limit(0)
        self._run(operation, lambda conn: conn.execute(probe).all())
        self._table_checked = True

    def _refuse_plaintext_into_encrypted_table(self) -> None:
        table = self._table
        query = select(table.c.key_id).where(table.c.key_id.is_not(None)).limit(1)
        sealed = self._run("save_token", lambda conn: conn.execute(query).scalar_one_or_none())
        if sealed is not None:
            raise EncryptionError(
                f"save_token: the table {table.name!r} holds encrypted rows (key {sealed}) and "
                f"this store has no keys: set {KEYS_ENV_VAR}, or pass allow_plaintext=True "
                "to write plaintext into it anyway"
            )
        self._plaintext_checked = True

    # The one boundary where database errors become TokenStoreError ------------------

    def _run(self, operation: str, work: Callable[[Connection], T], *, save: bool = False) -> T:
        """Run ``work`` on a pooled connection; wrap any database error.

        Every operation of the store is idempotent, so ``work`` is run a
        second time when the first attempt lost its connection (a server
        restart, a killed session, a network cut): the pool then replaces
        every connection older than the failure, or when the database rolled
        the statement back as a deadlock victim. A save is also run again
        when its insert lost a race on the unique user name, up to
        ``_SAVE_RACE_ATTEMPTS`` times in all.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._engine.connect() as conn:
                    try:
                        return work(conn)
                    except sa_exc.DBAPIError as exc:
                        if _left_mid_command(exc) and not conn.invalidated:
                            # Never hand this connection to the next caller.
                            conn.invalidate()
                        raise
            except sa_exc.DBAPIError as exc:
                if save and isinstance(exc, sa_exc.IntegrityError):
                    retry, attempts = True, _SAVE_RACE_ATTEMPTS
                else:
                    retry = (
                        exc.connection_invalidated
                        or _left_mid_command(exc)
                        or _deadlock_victim(exc)
                    )
                    attempts = _ATTEMPTS
                if retry and attempt < attempts:
                    continue
                raise self._error(operation, exc) from exc
            except sa_exc.SQLAlchemyError as exc:
                raise self._error(operation, exc) from exc

    def _error(self, operation: str, exc: sa_exc.SQLAlchemyError) -> TokenStoreError:
        # Wrapped first: wrapping hides the statement's parameters on ``exc``,
        # which stays attached to whatever this method returns.
        error = wrap_database_error(operation, exc)
        if not isinstance(exc, (sa_exc.ProgrammingError, sa_exc.OperationalError)):
            return error
        try:
            with self._engine.connect() as conn:
                problem = schema_problem(conn, self._table.name)
        except sa_exc.SQLAlchemyError:
            return error  # The database itself is the problem; report the first error.
        if problem is None:
            return error
        url = self._engine.url.render_as_string(hide_password=True)
        return SchemaMissingError(
            f"{operation}: {problem} (database {url}); run `zoho-token-store upgrade` "
            "or `alembic upgrade head`",
            cause=exc,
        )
