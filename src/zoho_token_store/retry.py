"""Running one operation's statements: which failures are tried again, and the errors.

Every operation of the store is idempotent, so its work runs again when an
attempt failed through no fault of its own:

- its connection was lost (a server restart, a killed session, a network
  cut), or psycopg was left in the middle of a command by a killed session:
  once more (``ATTEMPTS`` in all), on a new connection; the pool replaces
  every connection older than the failure;
- it lost to another worker: the database rolled its statement back as a
  deadlock victim (InnoDB's row locks make an UPDATE by user name and a
  DELETE by id deadlock now and then), or a save's INSERT lost the race on
  the unique user name. Each such loss means the other worker made progress,
  so the work runs again, after a pause of a few milliseconds, up to
  ``RACE_ATTEMPTS`` in all.

Anything else, and a failure that persists, becomes a
:class:`~zoho_token_store.errors.TokenStoreError`; this is the one place
where database errors are wrapped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from zoho_token_store.errors import SchemaMissingError, TokenStoreError, wrap_database_error
from zoho_token_store.migrate import schema_problem

__all__ = ["ATTEMPTS", "RACE_ATTEMPTS", "run"]

T = TypeVar("T")

# Attempts in all after lost connections, and after races lost to other workers.
ATTEMPTS = 2
RACE_ATTEMPTS = 10
# The longest pause before the next attempt after a lost race, in seconds,
# times the attempt's number: random, so that two workers that collided do
# not collide again in step.
_RACE_PAUSE = 0.005

# PostgreSQL's SQLSTATEs and MySQL's error number for "chosen as a deadlock
# victim, try again".
_DEADLOCK_SQLSTATES = frozenset({"40P01", "40001"})
_MYSQL_DEADLOCK = 1213


def run(
    engine: Engine,
    table_name: str,
    operation: str,
    work: Callable[[Connection], T],
    *,
    save: bool = False,
) -> T:
    """Run ``work`` on a pooled connection, again where the module docstring says.

    Raises :class:`~zoho_token_store.errors.TokenStoreError` naming
    ``operation``; a :class:`~zoho_token_store.errors.SchemaMissingError`
    when the table ``table_name`` is missing or at another schema revision.
    """
    races = disconnects = 0  # the failed attempts of each kind so far
    while True:
        try:
            with engine.connect() as conn:
                try:
                    return work(conn)
                except sa_exc.DBAPIError as exc:
                    if _left_mid_command(exc) and not conn.invalidated:
                        # Never hand this connection to the next caller.
                        conn.invalidate()
                    raise
        except sa_exc.DBAPIError as exc:
            if _deadlock_victim(exc) or (save and isinstance(exc, sa_exc.IntegrityError)):
                races += 1
                if races < RACE_ATTEMPTS:
                    time.sleep(random.uniform(0, _RACE_PAUSE * races))  # noqa: S311  # jitter
                    continue
            elif exc.connection_invalidated or _left_mid_command(exc):
                disconnects += 1
                if disconnects < ATTEMPTS:
                    continue
            raise _error(engine, table_name, operation, exc) from exc
        except sa_exc.SQLAlchemyError as exc:
            raise _error(engine, table_name, operation, exc) from exc


def _deadlock_victim(exc: sa_exc.DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _DEADLOCK_SQLSTATES:
        return True
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def _left_mid_command(exc: sa_exc.DBAPIError) -> bool:
    # psycopg's state after a session was killed while a command was on the
    # wire: SQLAlchemy does not count it as a disconnect, yet the connection
    # is unusable. It is dropped, and the operation runs again on a new one.
    return "another command is already in progress" in str(exc.orig)


def _error(
    engine: Engine, table_name: str, operation: str, exc: sa_exc.SQLAlchemyError
) -> TokenStoreError:
    # Wrapped first: wrapping hides the statement's parameters on ``exc``,
    # which stays attached to whatever this function returns.
    error = wrap_database_error(operation, exc)
    if not isinstance(exc, (sa_exc.ProgrammingError, sa_exc.OperationalError)):
        return error
    try:
        with engine.connect() as conn:
            problem = schema_problem(conn, table_name)
    except sa_exc.SQLAlchemyError:
        return error  # The database itself is the problem; report the first error.
    if problem is None:
        return error
    url = engine.url.render_as_string(hide_password=True)
    return SchemaMissingError(
        f"{operation}: {problem} (database {url}); run `zoho-token-store upgrade` "
        "or `alembic upgrade head`",
        cause=exc,
    )
