"""The ``zoho-token-store`` Typer app: global options and the migration commands.

The token commands are in cli_tokens.py, import and export in cli_transfer.py,
doctor in cli_doctor.py. cli.py holds the console script's entry point.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

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
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create the token table, or upgrade it to REVISION (default: the latest).

    A table the SDK's DBStore made (no revision recorded) is adopted in place:
    every token is kept and converted, and a user's duplicate rows are merged.
    """
    state = settings(ctx)
    engine = state.engine(create=True)
    try:
        config = migrate.alembic_config(engine, table_name=state.table)
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
    revision: Annotated[str, typer.Argument(help="Target revision; base drops the table.")],
) -> None:
    """Downgrade the token table to REVISION; `base` drops the table and every token in it."""
    state = settings(ctx)
    engine = state.engine()
    try:
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
    config = Config()
    config.set_main_option("script_location", str(migrate.migrations_path()))
    for script in ScriptDirectory.from_config(config).walk_revisions():
        line = script.cmd_format(
            verbose=False, include_branches=True, include_doc=True, include_parents=True
        )
        out().print(line, markup=False)


cli_tokens.register(app)
cli_transfer.register(app)
cli_doctor.register(app)
cli_crypto.register(app)
