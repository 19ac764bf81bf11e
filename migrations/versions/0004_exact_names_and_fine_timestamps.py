"""Compare user names and ids exactly on MySQL and MariaDB; time rows to the microsecond.

Before this revision the table's collation was ``utf8mb4_bin``, a PAD SPACE
collation: ``'ann'`` and ``'ann '`` compared equal, in lookups and in the
unique user name index, so saving ``'ann '`` overwrote Ann's tokens. The
table is converted to the binary NO PAD collation of its server
(``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8), which
compares exactly, as SQLite and PostgreSQL always have. No two rows can
collide in the new collation (it tells apart more values than the old one).

``created_at`` and ``updated_at`` become ``DATETIME(6)``, so that
``get_tokens`` lists rows saved within one second oldest first. SQLite and
PostgreSQL are unchanged: PostgreSQL's timestamps have microseconds already,
and SQLite orders ties by rowid (insertion order).

Both conversions rebuild the table on MySQL and MariaDB: on a large table,
run it at a quiet time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAD_SPACE = "utf8mb4_bin"
TIMESTAMPS = ("created_at", "updated_at")


def upgrade() -> None:
    dialect = op.get_context().dialect
    if dialect.name not in ("mysql", "mariadb"):
        return
    table_name = op.get_context().config.attributes["table_name"]
    exact = "utf8mb4_nopad_bin" if dialect.is_mariadb else "utf8mb4_0900_bin"
    op.execute(_convert(dialect, table_name, exact))
    for column in TIMESTAMPS:
        op.alter_column(
            table_name,
            column,
            type_=mysql.DATETIME(fsp=6),
            existing_type=mysql.DATETIME(),
            existing_nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP(6)"),
        )


def downgrade() -> None:
    context = op.get_context()
    if context.dialect.name not in ("mysql", "mariadb"):
        return
    table_name = context.config.attributes["table_name"]
    if not context.as_sql:
        # Two user names that differ only in trailing spaces are one in the
        # old collation: the unique index could not be rebuilt.
        names = sa.table(table_name, sa.column("user_name"))
        trimmed = sa.func.rtrim(names.c.user_name)
        clashes = (
            sa.select(trimmed)
            .select_from(names)
            .where(names.c.user_name.is_not(None))
            .group_by(trimmed)
            .having(sa.func.count() > 1)
            .limit(1)
        )
        if op.get_bind().execute(clashes).first() is not None:
            raise RuntimeError(
                f"{table_name} holds user names that differ only in trailing spaces, which "
                f"the old collation ({PAD_SPACE}) takes for one user: delete or rename one "
                "of each pair first"
            )
    for column in TIMESTAMPS:
        op.alter_column(
            table_name,
            column,
            type_=mysql.DATETIME(),
            existing_type=mysql.DATETIME(fsp=6),
            existing_nullable=False,
            server_default=sa.func.now(),
        )
    op.execute(_convert(context.dialect, table_name, PAD_SPACE))


def _convert(dialect: sa.Dialect, table_name: str, collation: str) -> str:
    # The table name may be a reserved word; the collation is one of ours.
    quoted = dialect.identifier_preparer.quote(table_name)
    return f"ALTER TABLE {quoted} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}"
