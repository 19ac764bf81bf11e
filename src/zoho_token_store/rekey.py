"""Re-sealing a table's secrets: turning encryption on, rotating keys, turning it off.

:func:`reseal` brings every row to one target: sealed under the first of the
given keys (``encrypt``, ``rotate-key``), or plaintext (``decrypt``). It works
in batches, one transaction each, and is resumable: a row is done once its
``key_id`` is the target's, so a run killed between batches picks up where it
stopped. Stores keep reading and writing meanwhile. Every value names the key
that sealed it, so a row reads correctly in any state; and each row is
rewritten only if its secrets are still the ones the batch read, so a token a
store saved in the meantime is never overwritten with an older one (the row is
left for the next pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, func, or_, select, update

from zoho_token_store.crypto import Codec
from zoho_token_store.mapping import SECRET_COLUMNS

__all__ = ["ResealReport", "pending_rows", "reseal"]

_DIGESTED = ("refresh_token", "access_token", "grant_token")
# The isolation level each backend uses by default; the store's own
# connections run in autocommit mode, a batch needs a real transaction.
_TRANSACTIONAL = {"postgresql": "READ COMMITTED", "sqlite": "SERIALIZABLE"}
_PASSES = 3


@dataclass
class ResealReport:
    """What :func:`reseal` did."""

    target: str | None
    resealed: int = 0
    batches: int = 0
    deferred: int = 0  # rows stores kept changing through every pass; run again


def pending_rows(conn: Connection, table: Table, target: str | None) -> int:
    """How many rows are not yet at ``target`` (a key id, or ``None`` for plaintext)."""
    query = select(func.count()).select_from(table).where(_not_at(table, target))
    return int(conn.execute(query).scalar_one())


def reseal(
    engine: Engine,
    table: Table,
    opener: Codec,
    sealer: Codec,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ResealReport:
    """Re-seal every row not at ``sealer``'s key under it; ``opener`` opens what is there.

    ``opener`` must hold every key the table's values were sealed with (a
    keyring of new and old keys); ``sealer`` is the target: a keyring whose
    first key is the new one, or the plain codec to decrypt. ``progress``
    is called with the number of rows each batch finished.
    """
    report = ResealReport(target=sealer.key_id)
    # Rows a store changed during a pass are left for the next one.
    for _ in range(_PASSES):
        report.deferred = _one_pass(engine, table, opener, sealer, batch_size, progress, report)
        if not report.deferred:
            break
    return report


def _one_pass(
    engine: Engine,
    table: Table,
    opener: Codec,
    sealer: Codec,
    batch_size: int,
    progress: Callable[[int], None] | None,
    report: ResealReport,
) -> int:
    target = sealer.key_id
    level = _TRANSACTIONAL.get(engine.dialect.name, "REPEATABLE READ")
    after, deferred = "", 0
    while True:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level=level)
            with conn.begin():
                rows = (
                    conn.execute(
                        select(table)
                        .where(_not_at(table, target), table.c.id > after)
                        .order_by(table.c.id)
                        .limit(batch_size)
                    )
                    .mappings()
                    .all()
                )
                done = sum(_reseal_row(conn, table, row, opener, sealer) for row in rows)
        if not rows:
            return deferred
        after = rows[-1]["id"]
        report.batches += 1
        report.resealed += done
        deferred += len(rows) - done
        if progress is not None:
            progress(len(rows))


def _reseal_row(conn: Connection, table: Table, row: Any, opener: Codec, sealer: Codec) -> bool:
    values: dict[str, Any] = {"key_id": sealer.key_id}
    for name in SECRET_COLUMNS:
        stored = row[name]
        if stored is None:
            continue
        plain = opener.open(stored)
        values[name] = sealer.seal(plain)
        if name in _DIGESTED:
            values[f"{name}_digest"] = sealer.digest(plain)
    unchanged = and_(
        *(
            table.c[name].is_(None) if row[name] is None else table.c[name] == row[name]
            for name in sorted(SECRET_COLUMNS)
        )
    )
    statement = update(table).where(table.c.id == row["id"], unchanged).values(**values)
    return bool(conn.execute(statement).rowcount)


def _not_at(table: Table, target: str | None) -> Any:
    column = table.c.key_id
    return column.is_not(None) if target is None else or_(column.is_(None), column != target)
