"""Running the packaged Alembic migrations, with or without the repository.

The same migrations back ``alembic upgrade head`` at the repository root,
``zoho-token-store upgrade`` and the functions here. Each token table keeps its
own version table (:func:`version_table_name`), so the migrations live beside
an app's own Alembic history, and two token tables in one database don't
share one.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from zoho_token_store.engine import UrlLike, make_engine, resolve_url
from zoho_token_store.models import DEFAULT_TABLE_NAME, validate_table_name

__all__ = [
    "VERSION_TABLE",
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "migrations_path",
    "schema_problem",
    "upgrade",
    "version_table_name",
]

VERSION_TABLE = "zoho_token_store_alembic_version"


def version_table_name(table_name: str = DEFAULT_TABLE_NAME) -> str:
    """The Alembic version table of the token table ``table_name``."""
    validate_table_name(table_name)
    return VERSION_TABLE if table_name == DEFAULT_TABLE_NAME else f"{VERSION_TABLE}_{table_name}"


def migrations_path() -> Path:
    """Where the migration scripts are: inside the installed package, else the source tree."""
    packaged = Path(str(resources.files("zoho_token_store"))) / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    # An editable install runs from the source tree, whose copy is at its root.
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(
    url: UrlLike | Engine | None = None, *, table_name: str = DEFAULT_TABLE_NAME
) -> Config:
    """An Alembic ``Config`` for the packaged migrations on ``url`` and ``table_name``.

    ``url`` as for the store: a URL, an Engine, or ``None`` for
    ``ZOHO_TOKEN_STORE_URL`` and then the SQLite default.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.attributes["table_name"] = validate_table_name(table_name)
    config.attributes["engine"] = url if isinstance(url, Engine) else make_engine(resolve_url(url))
    return config


def upgrade(
    url: UrlLike | Engine | None = None,
    revision: str = "head",
    *,
    table_name: str = DEFAULT_TABLE_NAME,
) -> None:
    """Upgrade the token table's schema to ``revision`` (by default the latest)."""
    _with_config(url, table_name, lambda config: command.upgrade(config, revision))


def downgrade(
    url: UrlLike | Engine | None, revision: str, *, table_name: str = DEFAULT_TABLE_NAME
) -> None:
    """Downgrade the token table's schema to ``revision`` (``"base"`` drops the table)."""
    _with_config(url, table_name, lambda config: command.downgrade(config, revision))


def current(
    url: UrlLike | Engine | None = None, *, table_name: str = DEFAULT_TABLE_NAME
) -> str | None:
    """The revision the database is at, or ``None`` before the first upgrade."""
    engine = url if isinstance(url, Engine) else make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": version_table_name(table_name)}
            )
            return context.get_current_revision()
    finally:
        if engine is not url:
            engine.dispose()


def head() -> str:
    """The latest revision the packaged migrations know."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    revision = ScriptDirectory.from_config(config).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {migrations_path()}")
    return revision


def _with_config(
    url: UrlLike | Engine | None, table_name: str, run: Callable[[Config], None]
) -> None:
    config = alembic_config(url, table_name=table_name)
    engine: Engine = config.attributes["engine"]
    try:
        run(config)
    finally:
        if engine is not url:
            engine.dispose()


def schema_problem(conn: Connection, table_name: str = DEFAULT_TABLE_NAME) -> str | None:
    """What keeps the token table from matching this version's schema, or ``None``.

    Called when a statement failed, to turn "no such table/column" into an
    instruction: the table is missing, or its schema is at an older revision
    (or at none: a table the SDK's DBStore created, which ``upgrade`` adopts).
    """
    if not inspect(conn).has_table(table_name):
        return f"the table {table_name!r} does not exist"
    context = MigrationContext.configure(
        conn, opts={"version_table": version_table_name(table_name)}
    )
    revision, latest = context.get_current_revision(), head()
    if revision is None:
        return f"the table {table_name!r} exists but was not created by these migrations"
    if revision != latest:
        return f"the table {table_name!r} is at schema revision {revision}, not {latest}"
    return None
