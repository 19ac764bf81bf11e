"""Create the token table.

The ten columns of the SDK's DBStore table, digests of the token values for
indexed lookups, and timestamps. A revision is a frozen record of the schema
at its time, so the columns are spelled out here rather than taken from
models.py; the migration tests check that the two agree.

When the table already exists, it is a table of the SDK's DBStore (this
revision only runs while none is recorded): it is adopted in place, every
token kept and converted to this schema (zoho_token_store/adopt.py). In
offline mode (``--sql``) nothing can be inspected, and the table is created.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from zoho_token_store import adopt

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

long_text = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    context = op.get_context()
    table_name = context.config.attributes["table_name"]
    if context.as_sql or not adopt.table_exists(op.get_bind(), table_name):
        create_table(table_name, table_name)
        return
    report = adopt.adopt_dbstore_table(
        op.get_bind(), table_name, lambda name: create_table(name, table_name)
    )
    context.config.attributes[adopt.REPORT_KEY] = report


def create_table(name: str, table_name: str) -> None:
    """Create the table ``name``, with the indexes of the token table ``table_name``."""
    op.create_table(
        name,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(255), nullable=True),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("client_secret", long_text, nullable=True),
        sa.Column("refresh_token", long_text, nullable=True),
        sa.Column("access_token", long_text, nullable=True),
        sa.Column("grant_token", long_text, nullable=True),
        sa.Column("expiry_time", sa.BigInteger(), nullable=True),
        sa.Column("redirect_url", sa.Text(), nullable=True),
        sa.Column("api_domain", sa.String(255), nullable=True),
        sa.Column("refresh_token_digest", sa.String(64), nullable=True),
        sa.Column("access_token_digest", sa.String(64), nullable=True),
        sa.Column("grant_token_digest", sa.String(64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mariadb_charset="utf8mb4",
        mariadb_collate="utf8mb4_bin",
    )
    op.create_index(f"ix_{table_name}_user_name", name, ["user_name"], unique=True)
    for column in ("access_token_digest", "refresh_token_digest", "grant_token_digest"):
        op.create_index(f"ix_{table_name}_{column}", name, [column])


def downgrade() -> None:
    table_name = op.get_context().config.attributes["table_name"]
    op.drop_table(table_name)
