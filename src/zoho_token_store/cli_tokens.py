"""``list``, ``show``, ``delete`` and ``purge``: the token commands of ``zoho-token-store``.

Secrets are only ever shown masked (masking.mask). Times are shown in local
time and relative to the database's clock.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from zoho_token_store.admin import StoredToken, TokenTable
from zoho_token_store.cli_common import (
    MAX_DURATION_TEXT,
    examples,
    expiry_text,
    fail,
    local_time,
    out,
    parse_duration,
    settings,
    timestamp,
)
from zoho_token_store.masking import mask

__all__ = ["register"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    app.command(
        "list", epilog=examples("list", "--url postgresql://app@db.internal/app list --json")
    )(list_tokens)
    app.command(epilog=examples("show 3f2b9c1e-...", "show 7 --json"))(show)
    app.command(epilog=examples("delete 3f2b9c1e-...", "delete --user ada@example.com"))(delete)
    app.command(
        epilog=examples(
            "purge --expired-before 30d --dry-run",
            "purge --expired-before 12h",
            "purge --all --yes",
        )
    )(purge)


def list_tokens(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the stored tokens: one row each, secrets masked."""
    state = settings(ctx)
    tokens, now = _with(state.tokens(), lambda table: table.tokens())
    if as_json:
        typer.echo(json.dumps([_as_json(t, now) for t in tokens], indent=2, ensure_ascii=False))
        return
    if not tokens:
        out().print(f"No tokens in table {state.table!r}.", markup=False)
        return
    out().print(_table(tokens, now))


def show(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="The token's id (see `list`).", metavar="ID")],
    as_json: JsonOption = False,
) -> None:
    """Show one token, every field, secrets masked."""
    state = settings(ctx)
    token, now = _with(state.tokens(), lambda table: table.token(id))
    if token is None:
        fail(f"show: no token with id {id!r} in table {state.table!r}")
    if as_json:
        typer.echo(json.dumps(_as_json(token, now, full=True), indent=2, ensure_ascii=False))
        return
    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    expiry = token.expiry_time
    for name, value in (
        ("id", token.id),
        ("user", token.user_name or "-"),
        ("client id", token.client_id or "-"),
        ("client secret", mask(token.client_secret)),
        ("refresh token", mask(token.refresh_token)),
        ("access token", mask(token.access_token)),
        ("grant token", mask(token.grant_token)),
        (
            "expiry",
            "-" if expiry is None else f"{local_time(expiry)} ({expiry_text(expiry, now)})",
        ),
        ("expiry_time", "-" if expiry is None else str(expiry)),
        ("redirect url", token.redirect_url or "-"),
        ("api domain", token.api_domain or "-"),
        ("issued at", local_time(token.issued_at)),
        ("refresh lease until", local_time(token.refresh_lease_until)),
        ("created at", timestamp(token.created_at)),
        ("updated at", timestamp(token.updated_at)),
    ):
        grid.add_row(name, Text(value))
    out().print(grid)


def delete(
    ctx: typer.Context,
    id: Annotated[
        Optional[str],  # noqa: UP045  # Typer reads it at runtime on 3.9
        typer.Argument(help="The id of the token to delete.", metavar="ID"),
    ] = None,
    user: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--user", metavar="NAME", help="Delete the token of this user instead."),
    ] = None,
) -> None:
    """Delete one token, by ID or by --user NAME."""
    if (id is None) == (user is None):
        raise typer.BadParameter("give either a token ID or --user NAME")
    state = settings(ctx)
    table = state.tokens()
    try:
        table.check("delete")
        if id is not None:
            if not table.delete([id]):
                fail(f"delete: no token with id {id!r} in table {state.table!r}")
            out().print(f"Deleted token {id!r}.", markup=False)
            return
        ids = table.ids_of_user(str(user))
        if not ids:
            fail(f"delete: no token of user {user!r} in table {state.table!r}")
        deleted = table.delete(ids)
        shown = ", ".join(repr(i) for i in ids)
        out().print(f"Deleted {deleted} token(s) of user {user!r} (id {shown}).", markup=False)
    finally:
        table.engine.dispose()


def purge(
    ctx: typer.Context,
    expired_before: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--expired-before",
            metavar="DURATION",
            help="Delete tokens whose access token expired longer ago than DURATION: "
            f"90s, 45min, 12h, 30d, 2w, up to {MAX_DURATION_TEXT}.",
        ),
    ] = None,
    all_tokens: Annotated[
        bool, typer.Option("--all", help="Delete every token (asks first).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete tokens that are no longer used, or all of them.

    A token whose access token expired DURATION ago has not been used since:
    the SDK refreshes it on every use. Deleting it means its user must
    authorize the app again (a new grant token).
    """
    if (expired_before is None) == (not all_tokens):
        raise typer.BadParameter("give either --expired-before DURATION or --all")
    age = None
    if expired_before is not None:
        try:
            age = parse_duration(expired_before)
        except typer.BadParameter as exc:
            exc.param_hint = "'--expired-before'"
            raise
    state = settings(ctx)
    table = state.tokens()
    try:
        table.check("purge")  # a count or a dry run on another table would mislead too
        if expired_before is not None and age is not None:
            _purge_expired(table, age, expired_before, dry_run)
        else:
            _purge_all(table, state.table, state.where, yes=yes, dry_run=dry_run)
    finally:
        table.engine.dispose()


def _purge_expired(table: TokenTable, age: int, text: str, dry_run: bool) -> None:
    cutoff = table.now() - age
    tokens, now = table.tokens(expired_before=cutoff)
    when = f"expired before {local_time(cutoff)} ({text} ago)"
    if not tokens:
        out().print(f"No tokens {when}.", markup=False)
        return
    if dry_run:
        out().print(f"Would delete {len(tokens)} token(s) {when}:", markup=False)
        out().print(_table(tokens, now))
        return
    deleted = table.delete([t.id for t in tokens], expired_before=cutoff)
    out().print(f"Deleted {deleted} token(s) {when}:", markup=False)
    out().print(_table(tokens, now))


def _purge_all(table: TokenTable, name: str, where: str, *, yes: bool, dry_run: bool) -> None:
    count = table.count()
    if count == 0:
        out().print(f"No tokens in table {name!r}.", markup=False)
        return
    if dry_run:
        out().print(f"Would delete all {count} token(s) in table {name!r}.", markup=False)
        return
    if not yes and not typer.confirm(
        f"Delete all {count} token(s) in table {name!r} at {where}?", err=True
    ):
        fail("purge: cancelled; nothing was deleted")
    deleted = table.delete_all()
    out().print(f"Deleted {deleted} token(s) from table {name!r}.", markup=False)


def _with(table: TokenTable, read: Any) -> Any:
    try:
        return read(table)
    finally:
        table.engine.dispose()


def _table(tokens: list[StoredToken], now: int) -> Table:
    view = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header, wraps in (
        ("id", False),
        ("user", False),
        ("client id", True),
        ("api domain", True),
        ("expires at", False),
        ("expiry", False),
        ("updated at", False),
        ("refresh token", False),
    ):
        view.add_column(header, overflow="fold", no_wrap=not wraps)
    for t in tokens:
        cells = (
            t.id,
            t.user_name or "-",
            t.client_id or "-",
            t.api_domain or "-",
            local_time(t.expiry_time, seconds=False),
            expiry_text(t.expiry_time, now),
            timestamp(t.updated_at, seconds=False),
            mask(t.refresh_token),
        )
        view.add_row(*(Text(cell) for cell in cells))
    return view


def _as_json(token: StoredToken, now: int, *, full: bool = False) -> dict[str, Any]:
    expiry = token.expiry_time
    data: dict[str, Any] = {
        "id": token.id,
        "user_name": token.user_name,
        "client_id": token.client_id,
        "api_domain": token.api_domain,
        "expiry_time": expiry,
        "expires_at": local_time(expiry) if expiry is not None else None,
        "expiry": expiry_text(expiry, now),
        "updated_at": token.updated_at.isoformat() if token.updated_at else None,
        "refresh_token": _masked(token.refresh_token),
        "access_token": _masked(token.access_token),
    }
    if full:
        data.update(
            client_secret=_masked(token.client_secret),
            grant_token=_masked(token.grant_token),
            redirect_url=token.redirect_url,
            issued_at=token.issued_at,
            refresh_lease_until=token.refresh_lease_until,
            created_at=token.created_at.isoformat() if token.created_at else None,
        )
    return data


def _masked(value: str | None) -> str | None:
    return mask(value) if value else None
