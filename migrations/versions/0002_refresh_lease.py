"""Add the refresh lease columns.

``issued_at`` records when the current access token was saved, so that its
lifetime is known; ``refresh_lease_until`` is the lease one caller takes to
refresh a token that is due. Both hold epoch milliseconds on the database's
clock, and both start empty: a row without them is refreshed as before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("issued_at", "refresh_lease_until")


def upgrade() -> None:
    table_name = op.get_context().config.attributes["table_name"]
    # batch_alter_table: SQLite can add columns in place, but dropping them on
    # downgrade needs the copy-and-move that batch mode does.
    with op.batch_alter_table(table_name) as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    table_name = op.get_context().config.attributes["table_name"]
    with op.batch_alter_table(table_name) as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
