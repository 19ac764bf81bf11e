"""Alembic environment for zoho-token-store, from Alembic's stock template.

Where the settings come from, first match wins:
- URL: ``-x url=...``, an Engine or Connection passed in ``config.attributes``
  (``engine`` / ``connection``), ``ZOHO_TOKEN_STORE_URL``, then
  ``sqlalchemy.url`` in alembic.ini.
- Table name: ``-x table_name=...``, ``config.attributes["table_name"]``,
  then ``oauthtoken``.

Only the token table is compared by ``alembic check`` and autogenerate, so the
app's own tables in the same database are left alone.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, MetaData

from zoho_token_store.engine import URL_ENV_VAR, make_engine, resolve_url
from zoho_token_store.migrate import version_table_name
from zoho_token_store.models import DEFAULT_TABLE_NAME, token_table, validate_table_name

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
x_args = context.get_x_argument(as_dictionary=True)

table_name = validate_table_name(
    x_args.get("table_name") or config.attributes.get("table_name") or DEFAULT_TABLE_NAME
)
# The revision scripts read the table name from here.
config.attributes["table_name"] = table_name

target_metadata = MetaData()
token_table(target_metadata, table_name)


def include_name(name: str | None, type_: str, _parent: Any) -> bool:
    return type_ != "table" or name == table_name


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=version_table_name(table_name),
        include_name=include_name,
        compare_type=True,
        **kwargs,
    )


def _url() -> str:
    url = (
        x_args.get("url") or os.environ.get(URL_ENV_VAR) or config.get_main_option("sqlalchemy.url")
    )
    return resolve_url(url).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) without a database."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine: Engine | None = None if x_args.get("url") else config.attributes.get("engine")
    owned = engine is None
    if engine is None:
        engine = make_engine(resolve_url(_url()))
    try:
        with engine.connect() as connection:
            # The store's engines run in autocommit mode; a migration needs a
            # real transaction, so that a failed step leaves nothing behind on
            # PostgreSQL, which rolls DDL back. pysqlite opens transactions
            # only before DML, so SQLite stays in autocommit, where the
            # adoption step (adopt.py) sends its own BEGIN.
            if connection.dialect.name != "sqlite":
                connection = connection.execution_options(
                    isolation_level=connection.default_isolation_level
                )
            _run_on(connection)
            connection.commit()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
