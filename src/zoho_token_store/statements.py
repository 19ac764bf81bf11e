"""The statements behind the store's operations, built for one table and one codec.

The store decides what to do (store.py); this module says it in SQL: the
lookup SELECT, the upsert (one UPDATE, else one INSERT), and the conditional
UPDATE that takes a refresh lease. Each statement commits by itself (the
store's connections are in autocommit mode), so each is atomic on its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
    Table,
    bindparam,
    case,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from zoho_token_store.clock import db_epoch_ms, precise_now
from zoho_token_store.crypto import MIXED, Codec, EncryptionError
from zoho_token_store.errors import InvalidTokenError
from zoho_token_store.mapping import LookupKey

__all__ = ["Statements"]


class Statements:
    """The statements on ``table``, with secrets sealed and found by ``codec``."""

    def __init__(self, table: Table, codec: Codec) -> None:
        self.table = table
        self.codec = codec
        self._lookups: dict[tuple[str, bool], Select[Any]] = {}

    def lease(
        self, conn: Connection, row: RowMapping, lease_ms: int, take_over: bool = False
    ) -> bool:
        """Take the refresh lease on ``row``'s token; True for the one caller that wins it.

        One conditional UPDATE, atomic on every backend: it matches only while
        nobody holds a live lease and the token is still the one this caller
        read (a refresh saved in between changes its expiry). With
        ``take_over``, it matches while the lease is still the one this caller
        read, live or not.
        """
        table = self.table
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
            .values(refresh_lease_until=db_epoch_ms() + lease_ms)
        )
        return bool(conn.execute(statement).rowcount)

    def first_row(self, conn: Connection, key: LookupKey) -> RowMapping | None:
        """The row ``key`` names (the first by id among equal digests), with ``db_now``."""
        several = bool(key.alternatives)
        params: dict[str, Any] = (
            {"values": list(key.candidates)} if several else {"value": key.value}
        )
        return conn.execute(self._lookup(key.column, several), params).mappings().first()

    def _lookup(self, column_name: str, several: bool) -> Select[Any]:
        """The lookup SELECT by one column, built once and reused.

        Building a statement costs more client time than the database spends
        running it: the profile of a lookup showed a quarter of it there.
        """
        cache_key = (column_name, several)
        query = self._lookups.get(cache_key)
        if query is None:
            table = self.table
            column = table.c[column_name]
            condition = (
                column.in_(bindparam("values", expanding=True))
                if several
                else column == bindparam("value")
            )
            # Every column but the timestamps, which a lookup never needs and
            # which SQLite would make the driver parse from text on each read.
            columns: list[ColumnElement[Any]] = [
                c for c in table.c if c.name not in ("created_at", "updated_at")
            ]
            columns.append(db_epoch_ms().label("db_now"))
            query = select(*columns).where(condition)
            if column_name not in ("id", "user_name"):
                # Token digests are not unique: pick the same row every time.
                query = query.order_by(table.c.id)
            query = self._lookups[cache_key] = query.limit(1)
        return query

    def upsert(
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
        on the unique index, whereupon retry.run tries again and updates.
        """
        target: LookupKey | None = key
        if key.column not in ("id", "user_name"):
            found = self.first_row(conn, key)
            target = LookupKey("id", found["id"]) if found is not None else None
        if target is not None:
            row_id = self._update(conn, target, values, token_id)
            if row_id is not None:
                return row_id
        if token_id is not None and key.column != "id":
            # The token came from a row (its id says which) that the key no
            # longer finds: a user name learnt since the row was saved. Only a
            # row without a user name takes one; another user's row stays theirs.
            row_id = self._update(
                conn, LookupKey("id", token_id), values, token_id, user=values.get("user_name")
            )
            if row_id is not None:
                return row_id
        if "key_id" in values:
            # A new row holds only what this store sealed.
            values = {**values, "key_id": self.codec.key_id}
        conn.execute(self.table.insert().values(id=new_id, **values))
        return new_id

    def _update(
        self,
        conn: Connection,
        target: LookupKey,
        values: dict[str, Any],
        token_id: str | None,
        user: str | None = None,
    ) -> str | None:
        """Update the row ``target`` names; return its id, or ``None`` if there is none.

        When the token already carries an id, that is what is returned: the
        caller only needs an id to give a token that lacks one. A store with
        keys never writes into a row sealed by a key it lacks: that would
        leave the row unreadable to the stores that hold the row's key. With
        ``user``, only a row without a user name (or with that one) is
        updated, and a row of another user is refused with
        :class:`InvalidTokenError`.
        """
        table = self.table
        matches = table.c[target.column] == target.value
        name = table.c.user_name
        only_unnamed = (or_(name.is_(None), name == user),) if user is not None else ()
        statement = (
            update(table)
            .where(matches, *only_unnamed, *self._writable())
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
        if row_id is None and user is not None:
            owner = conn.execute(select(table.c.user_name).where(matches)).first()
            if owner is not None and owner[0] not in (None, user):
                raise InvalidTokenError(
                    f"save_token: id {target.value!r} is the row of another user, and a row "
                    "keeps its user: save this user's token without that id"
                )
        if row_id is None and self.codec.key_ids:
            foreign = conn.execute(select(table.c.key_id).where(matches).limit(1)).first()
            if foreign is not None:
                raise EncryptionError(
                    f"save_token: the stored row is sealed with key {foreign[0]}, which is not "
                    f"among this store's keys ({', '.join(self.codec.key_ids)}); nothing was "
                    "written"
                )
        return row_id

    def _writable(self) -> tuple[ColumnElement[bool], ...]:
        """The rows a store with this codec may write secrets into; every row without keys."""
        if not self.codec.key_ids:
            return ()
        column = self.table.c.key_id
        return (or_(column.is_(None), column.in_((*self.codec.key_ids, MIXED))),)

    def key_id_after_write(self) -> ColumnElement[str | None]:
        """``key_id`` after an update that writes some secrets with this codec.

        The row keeps a single key id only while every secret in it is sealed
        by that key; otherwise it is "mixed", and ``encrypt``/``rotate-key``
        pick it up.
        """
        column = self.table.c.key_id
        current = self.codec.key_id
        if current is None:
            return case((column.is_(None), null()), else_=literal(MIXED))
        return case((column == current, literal(current)), else_=literal(MIXED))
