"""The ``zoho-token-store`` command line.

Needs the ``[cli]`` extra (Typer and Rich)::

    pip install 'zoho-token-store[cli]'
    zoho-token-store --url postgresql://app@db/app upgrade
"""

from __future__ import annotations

import sys
from typing import Optional

from sqlalchemy.exc import SQLAlchemyError

from zoho_token_store.engine import URL_ENV_VAR
from zoho_token_store.errors import TokenStoreError, wrap_database_error
from zoho_token_store.models import DEFAULT_TABLE_NAME

try:
    import typer
except ImportError:  # pragma: no cover - exercised only without the extra
    typer = None  # type: ignore[assignment]

__all__ = ["main"]


def _build() -> typer.Typer:
    from alembic import command

    from zoho_token_store import migrate

    app = typer.Typer(
        help="Look after a zoho-token-store database.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    state: dict[str, str | None] = {}

    @app.callback()
    def options(
        url: Optional[str] = typer.Option(  # noqa: UP045  # Typer reads it at runtime on 3.9
            None,
            "--url",
            envvar=URL_ENV_VAR,
            help="Database URL [default: sqlite:///zohooauth.db].",
            show_envvar=True,
        ),
        table: str = typer.Option(DEFAULT_TABLE_NAME, "--table", help="Token table name."),
    ) -> None:
        state["url"], state["table"] = url, table

    def table_name() -> str:
        return state["table"] or DEFAULT_TABLE_NAME

    @app.command()
    def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
        """Create or upgrade the token table (the packaged migrations).

        Example: zoho-token-store --url postgresql://app@db/app upgrade
        """
        migrate.upgrade(state["url"], revision, table_name=table_name())
        typer.echo(
            f"{table_name()}: at revision {migrate.current(state['url'], table_name=table_name())}"
        )

    @app.command()
    def downgrade(
        revision: str = typer.Argument(..., help="Target revision; base drops the table."),
    ) -> None:
        """Downgrade the token table to REVISION.

        Example: zoho-token-store downgrade base
        """
        migrate.downgrade(state["url"], revision, table_name=table_name())
        typer.echo(
            f"{table_name()}: at revision {migrate.current(state['url'], table_name=table_name())}"
        )

    @app.command()
    def current() -> None:
        """Print the revision the token table is at ("None" before the first upgrade).

        Example: zoho-token-store current
        """
        typer.echo(str(migrate.current(state["url"], table_name=table_name())))

    @app.command()
    def history() -> None:
        """List the packaged migrations, newest first.

        Example: zoho-token-store history
        """
        command.history(migrate.alembic_config(state["url"], table_name=table_name()))

    return app


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit code (0 ok, 1 failure, 2 usage)."""
    if typer is None:
        print(
            "zoho-token-store: the command line needs its extra: "
            "pip install 'zoho-token-store[cli]'",
            file=sys.stderr,
        )
        return 1
    try:
        _build()(args=argv, prog_name="zoho-token-store")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except TokenStoreError as exc:
        print(f"zoho-token-store: {exc.error_message}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"zoho-token-store: {wrap_database_error('command', exc).error_message}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
