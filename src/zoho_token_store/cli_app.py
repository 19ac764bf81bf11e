"""The ``zoho-token-store`` Typer app: global options and the migration commands.

The token commands are in cli_tokens.py, import and export in cli_transfer.py,
doctor in cli_doctor.py. cli.py holds the console script's entry point.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError

from zoho_token_store import adopt, cli_crypto, cli_doctor, cli_tokens, cli_transfer, migrate
from zoho_token_store.cli_common import (
    PROG,
    ErrorHandlingGroup,
    Settings,
    configure_logging,
    err,
    examples,
    out,
    settings,
)
from zoho_token_store.engine import URL_ENV_VAR, resolve_url
from zoho_token_store.errors import TokenStoreError
from zoho_token_store.models import DEFAULT_TABLE_NAME, validate_table_name

__all__ = ["app"]

app = typer.Typer(
    name=PROG,
    cls=ErrorHandlingGroup,
    help=(
        "Look after a zoho-token-store database: its schema, its tokens, "
        "and moving tokens in from the SDK's DBStore and FileStore."
    ),
    epilog=examples(
        "--url postgresql://app@db.internal/app upgrade",
        "list",
        "doctor",
    )
    + "\n\nExit codes: 0 ok, 1 failure, 2 usage error. Run a command with --help for more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _check_url(value: Optional[str]) -> Optional[str]:  # noqa: UP045  # Typer reads it on 3.9
    try:
        resolve_url(value)
    except TokenStoreError as exc:
        raise typer.BadParameter(exc.error_message) from None
    return value


def _check_table(value: str) -> str:
    try:
        return validate_table_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# Alembic's relative targets (+1, -2, 0002+1, branch@head-1) only resolve
# against the revision the database is at: they are checked when they run.
_RELATIVE = re.compile(r"(?:.+@)?\w*[+-][0-9]+")


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(migrate.migrations_path()))
    return ScriptDirectory.from_config(config)


def _unknown_revision(revision: str) -> typer.BadParameter:
    return typer.BadParameter(
        f"unknown revision {revision!r}; the head is {migrate.head()} "
        f"(`{PROG} history` lists them all)",
        param_hint="'REVISION'",
    )


def _check_revision(value: str) -> str:
    """Refuse a revision the packaged migrations lack, before the database is touched."""
    if not value.strip():
        raise _unknown_revision(value)
    if not _RELATIVE.fullmatch(value):
        with _revision_resolved(value):
            _scripts().get_revisions(value)
    return value


@contextmanager
def _revision_resolved(revision: str) -> Iterator[None]:
    """Turn Alembic's "can't locate revision" for ``revision`` into a usage error.

    Only for ``revision`` itself: a database at a revision this package does
    not know (one a newer version wrote) fails as it is, with exit code 1.
    """
    try:
        yield
    except CommandError as exc:
        cause = exc.__cause__
        if isinstance(cause, ResolutionError) and str(cause.argument) in revision:
            raise _unknown_revision(revision) from None
        raise


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--url",
            metavar="URL",
            envvar=URL_ENV_VAR,
            show_envvar=True,
            callback=_check_url,
            help="Database URL [default: sqlite:///zohooauth.db].",
        ),
    ] = None,
    table: Annotated[
        str,
        typer.Option("--table", metavar="NAME", callback=_check_table, help="Token table name."),
    ] = DEFAULT_TABLE_NAME,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show log messages, and tracebacks on errors.")
    ] = False,
) -> None:
    """Look after a zoho-token-store database."""
    configure_logging(debug)
    ctx.obj = Settings(url=url, table=table, debug=debug)


@app.command(
    epilog=examples(
        "upgrade",
        "--url mysql://root@db.internal/app upgrade",
        "--url postgresql://app@db.internal/app --table crm_tokens upgrade 0001",
    )
)
def upgrade(
    ctx: typer.Context,
    revision: Annotated[
        str,
        typer.Argument(help="Target revision.", callback=_check_revision),
    ] = "head",
) -> None:
    """Create the token table, or upgrade it to REVISION (default: the latest).

    A table the SDK's DBStore made (no revision recorded) is adopted in place:
    every token is kept and converted, and a user's duplicate rows are merged.
    """
    state = settings(ctx)
    engine = state.engine(create=True)
    try:
        config = migrate.alembic_config(engine, table_name=state.table)
        with _revision_resolved(revision):
            command.upgrade(config, revision)
        report = config.attributes.get(adopt.REPORT_KEY)
        if isinstance(report, adopt.AdoptionReport):
            out().print(report.summary(), markup=False)
            for line in report.warnings():
                err().print(f"warning: {line}", markup=False)
        out().print(
            f"{state.table}: at revision {migrate.current(engine, table_name=state.table)}",
            markup=False,
        )
    finally:
        engine.dispose()


@app.command(epilog=examples("downgrade 0001", "--table crm_tokens downgrade base"))
def downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str,
        typer.Argument(help="Target revision; base drops the table.", callback=_check_revision),
    ],
) -> None:
    """Downgrade the token table to REVISION; `base` drops the table and every token in it."""
    state = settings(ctx)
    engine = state.engine()
    try:
        with _revision_resolved(revision):
            migrate.downgrade(engine, revision, table_name=state.table)
        out().print(
            f"{state.table}: at revision {migrate.current(engine, table_name=state.table)}",
            markup=False,
        )
    finally:
        engine.dispose()


@app.command(epilog=examples("current", "--url postgresql://app@db.internal/app current"))
def current(ctx: typer.Context) -> None:
    """Print the revision the token table is at (None before the first upgrade)."""
    state = settings(ctx)
    if state.sqlite_file_missing() is not None:
        out().print("None", markup=False)  # and no empty database file is left behind
        return
    engine = state.engine()
    try:
        out().print(str(migrate.current(engine, table_name=state.table)), markup=False)
    finally:
        engine.dispose()


@app.command(epilog=examples("history"))
def history() -> None:
    """List the packaged migrations, newest first. Needs no database."""
    for script in _scripts().walk_revisions():
        line = script.cmd_format(
            verbose=False, include_branches=True, include_doc=True, include_parents=True
        )
        out().print(line, markup=False)


cli_tokens.register(app)
cli_transfer.register(app)
cli_doctor.register(app)
cli_crypto.register(app)
