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
    Table,
    delete,
    literal_column,
    select,
    true,
)

from zoho_token_store import retry
from zoho_token_store._sdk import OAuthToken, TokenStore
from zoho_token_store.clock import db_epoch_ms
from zoho_token_store.crypto import KEYS_ENV_VAR, MIXED, EncryptionError, codec_from
from zoho_token_store.engine import UrlLike, is_memory_sqlite, make_engine, resolve_url
from zoho_token_store.errors import (
    InvalidTokenError,
    TokenStoreError,
)
from zoho_token_store.mapping import (
    SECRET_COLUMNS,
    LookupKey,
    fill_missing,
    read_id,
    read_token,
    to_oauth_token,
)
from zoho_token_store.models import (
    DEFAULT_TABLE_NAME,
    token_table,
    validate_table_name,
)
from zoho_token_store.refresh import Action, RefreshPolicy
from zoho_token_store.statements import Statements

__all__ = ["SQLAlchemyTokenStore"]

T = TypeVar("T")

# The expiry given to the caller that must refresh: any past time makes the
# SDK refresh at once.
DUE = "0"


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
        if refresh is not None and not isinstance(refresh, RefreshPolicy):
            raise TokenStoreError(
                f"refresh must be a RefreshPolicy or None, got {type(refresh).__name__}"
            )
        if engine_options is not None and not isinstance(engine_options, Mapping):
            raise TokenStoreError(
                f"engine_options must be a mapping of create_engine arguments, "
                f"got {type(engine_options).__name__}"
            )
        if not isinstance(allow_plaintext, bool):
            raise TokenStoreError(
                f"allow_plaintext must be True or False, got {type(allow_plaintext).__name__}"
            )
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
        self._statements = Statements(self._table, self._codec)
        # Checked once, at the first save: the table holds no rows sealed with
        # keys this store lacks (any key, for a keyless store, unless it may
        # write plaintext anyway). See _refuse_a_table_sealed_with_other_keys.
        self._keys_checked = allow_plaintext and self._codec.key_id is None
        # Checked once, before the first delete: the table is this store's.
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
            values["key_id"] = self._statements.key_id_after_write()
        if "expiry_time" in values:
            # A new access token: its lifetime starts now, and any refresh
            # lease on the row is done.
            values.update(issued_at=db_epoch_ms(), refresh_lease_until=None)
        if not self._keys_checked:
            self._refuse_a_table_sealed_with_other_keys()
        row_id = self._run(
            "save_token",
            lambda conn: self._statements.upsert(conn, key, new_id, fields.id, values),
            save=True,
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

    # Reading with refresh coordination, and the checks before writing -----------------

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
            row = self._run(operation, lambda conn: self._statements.first_row(conn, key))
            if row is None:
                return None
            lease_until = row["refresh_lease_until"]
            action = policy.action(row["expiry_time"], row["issued_at"], lease_until, row["db_now"])
            if action is Action.USE:
                return row, False
            lease = partial(self._statements.lease, row=row, lease_ms=policy.lease_ms)
            if action is Action.LEASE and self._run(operation, lease):
                return row, True
            if action is Action.WAIT and lease_until != waiting_on:
                if waiting_on is not None:  # a new holder gets a whole wait too
                    deadline = time.monotonic() + policy.max_wait
                waiting_on = lease_until
            elif action is Action.WAIT and time.monotonic() >= deadline:
                # The holder is slow or gone. Take its lease over, so that one
                # caller refreshes instead of every waiter's SDK at once; the
                # waiters that lose see the winner's lease on their next read.
                if self._run(operation, partial(lease, take_over=True)):
                    return row, True
                continue
            if action is Action.WAIT:
                time.sleep(policy.poll_interval)
            # A lost lease race: read again to see what the winner left.

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

    def _refuse_a_table_sealed_with_other_keys(self) -> None:
        # Checked once, at a store's first save. A store without keys would
        # mix plaintext into an encrypted table (unless allowed to), and a
        # store without every key the table uses would add rows that the
        # other stores cannot read, and could not read the table's rows.
        table = self._table
        column = table.c.key_id
        not_mine = column.not_in((*self._codec.key_ids, MIXED)) if self._codec.key_ids else true()
        query = select(column).where(column.is_not(None), not_mine).limit(1)
        sealed = self._run("save_token", lambda conn: conn.execute(query).scalar_one_or_none())
        if sealed is None:
            self._keys_checked = True
            return
        if not self._codec.key_ids:
            raise EncryptionError(
                f"save_token: the table {table.name!r} holds encrypted rows (key {sealed}) and "
                f"this store has no keys: set {KEYS_ENV_VAR}, or pass allow_plaintext=True "
                "to write plaintext into it anyway"
            )
        raise EncryptionError(
            f"save_token: the table {table.name!r} holds rows sealed with key {sealed}, "
            f"which is not among this store's keys ({', '.join(self._codec.key_ids)}): "
            "add it to the keys, after the current one; nothing was written"
        )

    def _run(self, operation: str, work: Callable[[Connection], T], *, save: bool = False) -> T:
        """Run ``work`` with the retries and the error wrapping of retry.py."""
        return retry.run(self._engine, self._table.name, operation, work, save=save)
