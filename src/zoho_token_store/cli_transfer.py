"""``import`` and ``export``: tokens in from the SDK's FileStore or DBStore, out to FileStore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from zoho_token_store import sources, transfer
from zoho_token_store.cli_common import PROG, err, examples, fail, out, settings

__all__ = ["register"]

# From this many rows on, an import shows a progress bar (on a terminal).
PROGRESS_FROM = 200


def register(app: typer.Typer) -> None:
    app.command(
        "import",
        epilog=examples(
            "import zoho_tokens.csv",
            "--url postgresql://app@db.internal/app import /var/app/tokens.csv",
            "import --from-dbstore mysql://root@db.internal/zohooauth --from-table oauthtoken",
        ),
    )(import_tokens)
    app.command(
        "export",
        epilog=examples(
            "export inventory.csv",
            "export --include-secrets --force /secure/zoho_tokens.csv",
        ),
    )(export_tokens)


def import_tokens(
    ctx: typer.Context,
    file: Annotated[
        Optional[Path],  # noqa: UP045  # Typer reads it at runtime on 3.9
        typer.Argument(
            help="A FileStore CSV file (10 columns, or 9 from older SDKs).",
            metavar="FILE",
            dir_okay=False,
        ),
    ] = None,
    from_dbstore: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--from-dbstore", metavar="URL", help="Read a DBStore table at this URL."),
    ] = None,
    from_table: Annotated[
        str, typer.Option("--from-table", metavar="NAME", help="The DBStore table to read.")
    ] = "oauthtoken",
) -> None:
    """Import tokens from a FileStore CSV file, or from a DBStore table (only read).

    Each row is saved through the store's save_token: a user already stored is
    updated, unless the stored token is newer. A user's duplicate rows are
    merged first (the one that expires last is kept). Running the same import
    twice changes nothing the second time. Exits 1 when a row could not be
    imported (a malformed line, a row without any token); every other row is.
    """
    if (file is None) == (from_dbstore is None):
        raise typer.BadParameter("give either a FILE or --from-dbstore URL")
    state = settings(ctx)
    source = (
        sources.read_filestore_csv(file)
        if file is not None
        else sources.read_dbstore_table(str(from_dbstore), from_table)
    )
    store = state.store()
    try:
        total = len(source.records)
        progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err(),
            transient=True,
            disable=total < PROGRESS_FROM,
        )
        with progress:
            task = progress.add_task("import", total=total)
            report = transfer.import_records(
                store, source, on_record=lambda: progress.advance(task)
            )
    finally:
        store.close()
    _print_report(report, state.table)
    if report.rejected:
        fail(
            f"import: {len(report.rejected)} row(s) could not be imported; fix them and run "
            "the same import again (rows already stored are left as they are)"
        )


def _print_report(report: transfer.ImportReport, table: str) -> None:
    merged = sum(len(m.dropped) for m in report.merges)
    out().print(
        f"Imported {report.source} into {table!r}: {len(report.new)} new, "
        f"{len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.skipped)} skipped, {merged} duplicate(s) merged.",
        markup=False,
    )
    for problem in report.skipped:
        out().print(f"  skipped {problem.where}: {problem.reason}", markup=False)
    for merge in report.merges:
        out().print(f"  merged {merge.describe()}", markup=False)
    for note in report.notes:
        out().print(f"  note {note.where}: {note.reason}", markup=False)


def export_tokens(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="The CSV file to write.", metavar="FILE", dir_okay=False)
    ],
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Write the client secret and the tokens; without it they are left empty.",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Export every token to a CSV file in the SDK's FileStore format (mode 0600).

    The SDK's FileStore reads the file as it is. Without --include-secrets the
    secrets are left out, for an inventory; with it, the file holds live
    credentials: keep it as safe as the database.
    """
    state = settings(ctx)
    store = state.store()
    try:
        count = transfer.export_filestore_csv(
            store, file, include_secrets=include_secrets, overwrite=force
        )
    finally:
        store.close()
    secrets = (
        "with secrets: keep it safe, and delete it when done"
        if include_secrets
        else f"secrets left out ({PROG} export --include-secrets writes them)"
    )
    out().print(f"Exported {count} token(s) to {str(file)!r} (mode 0600), {secrets}.", markup=False)
