"""Add the encryption key id column.

``key_id`` records which key sealed a row's secrets: NULL for a plaintext row
(every row at this revision), a key id, or "mixed" while a table is being
encrypted or rotated. The lookup digest columns this feature needs have been
there since 0001: a plaintext table keeps its SHA-256 digests, so this
revision needs no key and rewrites no row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table_name = op.get_context().config.attributes["table_name"]
    with op.batch_alter_table(table_name) as batch:
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
        batch.create_index(f"ix_{table_name}_key_id", ["key_id"])


def downgrade() -> None:
    context = op.get_context()
    table_name = context.config.attributes["table_name"]
    sealed = sa.table(table_name, sa.column("key_id"))
    count = sa.select(sa.func.count()).where(sealed.c.key_id.is_not(None))
    # Offline (--sql) there is no table to look at: the DBA runs the check.
    if not context.as_sql and op.get_bind().execute(count).scalar():
        raise RuntimeError(
            f"{table_name} holds encrypted rows: decrypt them first "
            "(zoho-token-store decrypt), or they would be unreadable without the key id"
        )
    with op.batch_alter_table(table_name) as batch:
        batch.drop_index(f"ix_{table_name}_key_id")
        batch.drop_column("key_id")
