"""The schema of the token table, and ``OAuthTokenRow``, its ORM model.

The table keeps the ten columns of the SDK's ``DBStore`` table so that existing
data and tooling carry over, and adds what a production store needs:

- ``*_digest`` columns hold the SHA-256 of each token value. Lookups by access,
  refresh and grant token go through them: they are short and fixed-width, so
  they can be indexed on every backend (MySQL cannot index a long ``TEXT``),
  while the token columns themselves take values of any length.
- ``user_name`` is unique: one user never gets two rows, even when two
  processes save the same new user at the same moment.
- ``expiry_time`` is an integer of epoch milliseconds, so that the database can
  compare expiries; the SDK's string form round-trips exactly.
- ``issued_at`` (when the current access token was saved) and
  ``refresh_lease_until`` coordinate refreshes across processes (refresh.py).
- ``key_id`` records which encryption key sealed a row's secrets (crypto.py).
- ``created_at`` and ``updated_at``, for operators, to the microsecond on
  every backend but SQLite (whose clock has whole seconds; ties there are
  ordered by rowid, which is insertion order).
- On MySQL and MariaDB the table's collation is binary and NO PAD
  (:func:`exact_collation`): user names and ids compare exactly, trailing
  spaces included, as on the other backends.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Index,
    MetaData,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped
from sqlalchemy.types import TypeEngine

from zoho_token_store.clock import precise_now

__all__ = [
    "DEFAULT_TABLE_NAME",
    "OAuthTokenRow",
    "TokenBase",
    "exact_collation",
    "token_table",
    "validate_table_name",
]

DEFAULT_TABLE_NAME = "oauthtoken"

# MySQL caps identifiers at 64 characters and PostgreSQL at 63; the longest
# name derived from the table's is its version table (see migrate.py), 33
# characters plus one plus the table name.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,28}")

# TEXT is 64 KiB on MySQL; MEDIUMTEXT (16 MiB) lets a token be as long there
# as on the other backends.
LongText: TypeEngine[str] = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

# SHA-256 in lowercase hex.
DIGEST_LENGTH = 64

# Microseconds on MySQL and MariaDB, whose plain DATETIME has whole seconds.
Timestamp: TypeEngine[datetime] = DateTime(timezone=True).with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb"
)


def exact_collation(dialect: Dialect) -> str:
    """The binary NO PAD utf8mb4 collation of a MySQL or MariaDB server.

    ``utf8mb4_bin`` is PAD SPACE: ``'ann'`` and ``'ann '`` would be one user.
    """
    return "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"


def _make_collation_exact(table: Table, connection: Connection, **_kw: Any) -> None:
    # CREATE TABLE names one collation for MySQL and MariaDB alike, and the
    # NO PAD ones differ by server; the migrations do the same (0004).
    dialect = connection.dialect
    if dialect.name in ("mysql", "mariadb"):
        quoted = dialect.identifier_preparer.quote(table.name)
        collation = exact_collation(dialect)
        connection.execute(
            text(f"ALTER TABLE {quoted} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
        )


def validate_table_name(name: str) -> str:
    """Return ``name`` if it can name the token table, else raise ``ValueError``.

    Letters, digits and underscores, starting with a letter or underscore, at
    most 29 characters, so that every derived index and version table name
    stays within each backend's identifier limit.
    """
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid table name {name!r}: use 1 to 29 letters, digits or underscores, "
            "starting with a letter or underscore"
        )
    return name


def token_table(metadata: MetaData, name: str = DEFAULT_TABLE_NAME) -> Table:
    """Define the token table called ``name`` in ``metadata``.

    The single definition of the schema: the ORM model, the store and the
    migration check all use it.
    """
    validate_table_name(name)
    table = Table(
        name,
        metadata,
        Column("id", String(64), primary_key=True),
        Column("user_name", String(255), nullable=True),
        Column("client_id", String(255), nullable=True),
        Column("client_secret", LongText, nullable=True),
        Column("refresh_token", LongText, nullable=True),
        Column("access_token", LongText, nullable=True),
        Column("grant_token", LongText, nullable=True),
        Column("expiry_time", BigInteger, nullable=True),
        Column("redirect_url", Text, nullable=True),
        Column("api_domain", String(255), nullable=True),
        Column("refresh_token_digest", String(DIGEST_LENGTH), nullable=True),
        Column("access_token_digest", String(DIGEST_LENGTH), nullable=True),
        Column("grant_token_digest", String(DIGEST_LENGTH), nullable=True),
        # Refresh coordination (refresh.py), both in epoch ms on the database's clock.
        Column("issued_at", BigInteger, nullable=True),
        Column("refresh_lease_until", BigInteger, nullable=True),
        # Encryption at rest (crypto.py): NULL for a plaintext row, the id of
        # the key that sealed every secret of the row, or "mixed".
        Column("key_id", String(16), nullable=True),
        Column("created_at", Timestamp, nullable=False, server_default=precise_now()),
        Column("updated_at", Timestamp, nullable=False, server_default=precise_now()),
        Index(f"ix_{name}_user_name", "user_name", unique=True),
        Index(f"ix_{name}_access_token_digest", "access_token_digest"),
        Index(f"ix_{name}_refresh_token_digest", "refresh_token_digest"),
        Index(f"ix_{name}_grant_token_digest", "grant_token_digest"),
        Index(f"ix_{name}_key_id", "key_id"),
        # utf8mb4 stores any Unicode user name; after CREATE TABLE, the
        # collation becomes the server's exact one (exact_collation).
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mariadb_charset="utf8mb4",
        mariadb_collate="utf8mb4_bin",
    )
    event.listen(table, "after_create", _make_collation_exact)
    return table


class TokenBase(DeclarativeBase):
    """Declarative base of this package's ORM models; its metadata holds the default table."""


class OAuthTokenRow(TokenBase):
    """One stored token, in the default ``oauthtoken`` table.

    For reporting and admin code that prefers the ORM. The store itself runs
    Core statements against :func:`token_table`, which also serves tables with
    another name.
    """

    __table__ = token_table(TokenBase.metadata)

    id: Mapped[str]
    user_name: Mapped[Optional[str]]  # noqa: UP045  # evaluated at runtime on 3.9
    client_id: Mapped[Optional[str]]  # noqa: UP045
    client_secret: Mapped[Optional[str]]  # noqa: UP045
    refresh_token: Mapped[Optional[str]]  # noqa: UP045
    access_token: Mapped[Optional[str]]  # noqa: UP045
    grant_token: Mapped[Optional[str]]  # noqa: UP045
    expiry_time: Mapped[Optional[int]]  # noqa: UP045
    redirect_url: Mapped[Optional[str]]  # noqa: UP045
    api_domain: Mapped[Optional[str]]  # noqa: UP045
    refresh_token_digest: Mapped[Optional[str]]  # noqa: UP045
    access_token_digest: Mapped[Optional[str]]  # noqa: UP045
    grant_token_digest: Mapped[Optional[str]]  # noqa: UP045
    issued_at: Mapped[Optional[int]]  # noqa: UP045
    refresh_lease_until: Mapped[Optional[int]]  # noqa: UP045
    key_id: Mapped[Optional[str]]  # noqa: UP045
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        # Secrets stay out of reprs: only identifiers and the expiry are shown.
        return (
            f"OAuthTokenRow(id={self.id!r}, user_name={self.user_name!r}, "
            f"client_id={self.client_id!r}, expiry_time={self.expiry_time!r})"
        )
