"""Turning what the user passed as ``url`` into an Engine that suits a token store.

- No URL: ``ZOHO_TOKEN_STORE_URL``, then ``sqlite:///zohooauth.db``.
- ``postgresql://`` and ``mysql://`` without a driver get the drivers this
  package's extras install (psycopg 3 and PyMySQL), so a plain URL works.
- MySQL and MariaDB connections use ``utf8mb4``, so any Unicode user name fits.
- A SQLite file gets WAL mode and a busy timeout, so several processes can
  share it without "database is locked" failures.
- In-memory SQLite (``sqlite://``) keeps one database for every thread, and
  hands its one connection to one thread at a time.
- Statements run in autocommit mode: one round trip each.
- psycopg and PyMySQL get connect and read timeouts (``DEFAULT_CONNECT_ARGS``).
- A forked child process never reuses the parent's pooled connections.
- An ``Engine`` passed in keeps its pool and its settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import weakref
from typing import Any, Union

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import QueuePool

from zoho_token_store.errors import TokenStoreError

__all__ = [
    "DEFAULT_URL",
    "URL_ENV_VAR",
    "MissingDependencyError",
    "UrlLike",
    "is_memory_sqlite",
    "make_engine",
    "resolve_url",
]

URL_ENV_VAR = "ZOHO_TOKEN_STORE_URL"
DEFAULT_URL = "sqlite:///zohooauth.db"

UrlLike = Union[str, URL]

LOGGING_NAME = "zoho_token_store"

# How long a SQLite writer waits for another process's write to finish.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Default driver timeouts, in seconds, so that an unreachable or silent server
# gives an error instead of a hang (psycopg would wait 130 s per attempt, and
# PyMySQL for a silent server's answer forever). An operation makes at most
# three waits (two attempts, then the schema check), so it fails within 45 s.
# A token store's statements touch one row and never hold a lock for long;
# ``engine_options={"connect_args": {...}}`` overrides each value.
DEFAULT_CONNECT_ARGS: dict[str, dict[str, int]] = {
    "psycopg": {"connect_timeout": 10},
    "pymysql": {"connect_timeout": 10, "read_timeout": 15, "write_timeout": 15},
}

_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",  # the scheme Heroku and others hand out
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
_SCHEMES = "'postgresql://', 'mysql://', 'mariadb://' or 'sqlite:///path.db'"


class MissingDependencyError(TokenStoreError):
    """The database driver for the URL is not installed; the message names the extra."""


def resolve_url(url: UrlLike | None) -> URL:
    """Return the URL the store should use: ``url``, the environment variable, or the default.

    Raises :class:`TokenStoreError` for a string that is not a database URL.
    The message never repeats the string, which may hold a password.
    """
    if url is None:
        url = os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError, TypeError) as exc:
            raise TokenStoreError(
                "invalid database URL: expected a form such as "
                "'postgresql://user@host/db', 'mysql://user@host/db' or 'sqlite:///path.db'",
                cause=exc,
            ) from None
    driver = _DEFAULT_DRIVERS.get(parsed.drivername)
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() in ("mysql", "mariadb") and not parsed.database:
        raise TokenStoreError(
            "invalid database URL: a MySQL or MariaDB URL must name its database, "
            "as in 'mysql://user@host/dbname'"
        )
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        charset = parsed.query.get("charset", "utf8mb4")
        if charset != "utf8mb4":
            # Another charset cannot carry every user name and token: the
            # driver would fail to encode one, or the server mangle it.
            raise TokenStoreError(
                f"invalid database URL: a MySQL or MariaDB connection must use "
                f"charset=utf8mb4, not {str(charset)[:16]!r}; leave charset out to get it"
            )
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def is_memory_sqlite(url: URL) -> bool:
    """True for a SQLite database that lives in this process only."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or url.query.get("mode") == "memory"
    )


def make_engine(url: URL, **options: Any) -> Engine:
    """Create an Engine for ``url`` with the settings a token store needs.

    ``options`` go to :func:`sqlalchemy.create_engine` and win over the
    defaults here. Token values stay out of SQLAlchemy's error messages and
    logs: statement parameters are hidden, and so are fetched rows.
    """
    settings: dict[str, Any] = {
        "hide_parameters": True,
        "logging_name": LOGGING_NAME,
        # Every statement of the store is a whole unit of work by itself, so
        # it runs in autocommit mode: a lookup is one round trip, with no
        # BEGIN before it and no ROLLBACK when its connection goes back to the
        # pool, and an update commits with no separate COMMIT.
        "isolation_level": "AUTOCOMMIT",
        "skip_autocommit_rollback": True,
    }
    backend = url.get_backend_name()
    if is_memory_sqlite(url):
        # One connection is the whole database. A pool of exactly one hands it
        # to one thread at a time, which pysqlite requires, and every store
        # sharing the engine waits its turn.
        settings.update(
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
    elif backend != "sqlite":
        # Recycle before a server's idle timeout (MySQL's wait_timeout can be
        # set low) closes a pooled connection under us.
        settings.update(pool_recycle=3600)
    # Read from the name: get_driver_name() would load the dialect first.
    defaults = DEFAULT_CONNECT_ARGS.get(url.drivername.partition("+")[2], {})
    connect_args = {
        # A timeout in the URL's query (``?connect_timeout=5``) is the user's.
        **{name: value for name, value in defaults.items() if name not in url.query},
        **settings.get("connect_args", {}),
        **options.get("connect_args", {}),
    }
    settings.update(options)
    if connect_args:
        settings["connect_args"] = connect_args
    try:
        engine = create_engine(url, **settings)
    except (ImportError, sa_exc.NoSuchModuleError) as exc:
        if backend not in ("postgresql", "mysql", "mariadb", "sqlite"):
            raise TokenStoreError(
                f"invalid database URL: unknown database {url.drivername!r}; use {_SCHEMES}",
                cause=exc,
            ) from None
        extra = _EXTRAS.get(backend) if url.drivername in _DEFAULT_DRIVERS.values() else None
        hint = f"pip install 'zoho-token-store[{extra}]'" if extra else "install its driver"
        raise MissingDependencyError(
            f"no database driver for {url.drivername!r}: {hint}", cause=exc
        ) from None
    except (TypeError, ValueError) as exc:
        # An engine option or a URL query value the driver cannot take. The
        # message names the option; should it ever quote the password, the
        # password is masked.
        detail = str(exc)
        if url.password:
            detail = detail.replace(str(url.password), "***")
        raise TokenStoreError(
            f"invalid engine option or URL query value: {type(exc).__name__}: {detail}",
            cause=exc,
        ) from None
    if backend == "sqlite" and not is_memory_sqlite(url):
        event.listen(engine, "connect", _tune_sqlite_file)
    if not is_memory_sqlite(url):
        _forget_connections_after_fork(engine)
    return engine


class _NoRowLogging(logging.Filter):
    """Drops SQLAlchemy's DEBUG records of fetched rows: they hold token values."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Row "))


# The store's own engines log under this name, and its rows never reach a log,
# even with `echo="debug"` or the sqlalchemy.engine logger at DEBUG.
logging.getLogger(f"sqlalchemy.engine.Engine.{LOGGING_NAME}").addFilter(_NoRowLogging())


def _forget_connections_after_fork(engine: Engine) -> None:
    # A forked worker (gunicorn --preload, multiprocessing) inherits the
    # parent's pooled sockets; two processes talking over one socket corrupt
    # each other's sessions. The child drops its copies without closing them,
    # which would close the parent's, and opens its own on first use. An
    # in-memory SQLite database is left alone: its one connection is the data.
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows
        return
    ref = weakref.ref(engine)

    def forget() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=forget)


def _tune_sqlite_file(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; the busy timeout makes a second
    # writer wait for the first instead of failing at once.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}")
        # On a rollback-journal file while another process writes, SQLite
        # does not wait for the switch (no busy handler where it could
        # deadlock) and says "database is locked" at once. The connection
        # then goes on in the file's current mode, where the busy timeout
        # makes it wait for the writer; a later connection makes the switch.
        with contextlib.suppress(sqlite3.OperationalError):
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()
