"""The database's clock, in epoch milliseconds, as one SQL expression per backend.

Refresh coordination compares expiries with "now". Workers on several machines
disagree about now by however far their clocks drift; the database they share
has one clock, so every decision uses it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["db_epoch_ms"]


class db_epoch_ms(FunctionElement[int]):
    """``now`` on the database server, as integer epoch milliseconds."""

    type = BigInteger()
    inherit_cache = True
    name = "db_epoch_ms"


@compiles(db_epoch_ms, "postgresql")
def _postgresql(_element: db_epoch_ms, _compiler: Any, **_kw: Any) -> str:
    # clock_timestamp(), not now(): now() is frozen at the transaction's start.
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


@compiles(db_epoch_ms, "mysql")
@compiles(db_epoch_ms, "mariadb")
def _mysql(_element: db_epoch_ms, _compiler: Any, **_kw: Any) -> str:
    return "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"


@compiles(db_epoch_ms, "sqlite")
def _sqlite(_element: db_epoch_ms, _compiler: Any, **_kw: Any) -> str:
    # julianday() has millisecond resolution and is available on every
    # SQLite version this package supports (unixepoch('subsec') needs 3.42).
    return "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
