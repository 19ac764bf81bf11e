"""The database's clock as SQL expressions, one per backend.

``db_epoch_ms()`` is now in epoch milliseconds; ``precise_now()`` is now as a
timestamp, at the finest resolution the table's timestamp columns keep.

Refresh coordination compares expiries with "now". Workers on several machines
disagree about now by however far their clocks drift; the database they share
has one clock, so every decision uses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["db_epoch_ms", "precise_now"]


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


class precise_now(FunctionElement[datetime]):  # named like func.now()
    """The database's current time, to the microsecond where the server's clock allows.

    MySQL's and MariaDB's ``CURRENT_TIMESTAMP`` has whole seconds unless asked
    for more; the table's ``DATETIME(6)`` columns keep microseconds.
    """

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(precise_now)
def _now(_element: precise_now, _compiler: Any, **_kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(precise_now, "mysql")
@compiles(precise_now, "mariadb")
def _now_mysql(_element: precise_now, _compiler: Any, **_kw: Any) -> str:
    return "CURRENT_TIMESTAMP(6)"
