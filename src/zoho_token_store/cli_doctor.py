"""``doctor``: is the token table in shape? Exit 0 only when it is."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from zoho_token_store import doctor
from zoho_token_store.cli_common import examples, out, settings

__all__ = ["register"]

_STYLE = {
    doctor.Status.OK: "green",
    doctor.Status.INFO: "cyan",
    doctor.Status.WARN: "yellow",
    doctor.Status.FAIL: "bold red",
}


def register(app: typer.Typer) -> None:
    app.command(
        "doctor",
        epilog=examples(
            "doctor",
            "--url mysql://root@db.internal/app --table crm_tokens doctor --json",
            "doctor --strict",
        ),
    )(doctor_command)


def doctor_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
) -> None:
    """Check the database: connection, schema revision, indexes and constraints, and the tokens.

    Fails (exit 1) when the database cannot be reached, the table is missing or
    behind the package's migrations, an index or constraint is missing, or a
    user has two rows. Warns about tokens a user will have to authorize again:
    no refresh token, or an access token without an expiry.
    """
    state = settings(ctx)
    missing = state.sqlite_file_missing()
    if missing is not None:
        report = doctor.Diagnosis(url=state.where, table=state.table)
        report.add("connect", doctor.Status.FAIL, f"no SQLite database at {str(missing)!r}")
    else:
        engine = state.engine()
        try:
            report = doctor.diagnose(engine, state.table)
        finally:
            engine.dispose()
    healthy = report.clean if strict else report.healthy
    if as_json:
        data = {
            "url": report.url,
            "table": report.table,
            "healthy": healthy,
            "checks": [
                {"name": c.name, "status": c.status.value, "detail": c.detail}
                for c in report.checks
            ],
        }
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        view = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            title=Text(f"{report.table} at {report.url}"),
        )
        view.add_column("check", no_wrap=True)
        view.add_column("status", no_wrap=True)
        view.add_column("detail", overflow="fold")
        for check in report.checks:
            view.add_row(
                Text(check.name),
                Text(check.status.value, style=_STYLE[check.status]),
                Text(check.detail),
            )
        out().print(view)
        out().print("healthy" if healthy else "NOT healthy", style="green" if healthy else "red")
    if not healthy:
        raise typer.Exit(1)
