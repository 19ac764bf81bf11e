"""``encrypt``, ``rotate-key`` and ``decrypt``: re-sealing the table's secrets.

The keys come from ``ZOHO_TOKEN_STORE_KEYS`` only, never from the command
line, where they would land in shell history and process listings. The work
itself is rekey.reseal: batches, one transaction each, resumable, while the
app keeps running.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from zoho_token_store.admin import TokenTable
from zoho_token_store.cli_common import err, examples, fail, out, settings
from zoho_token_store.crypto import KEYS_ENV_VAR, Codec, Keyring, PlainCodec, codec_from
from zoho_token_store.rekey import ResealReport, pending_rows, reseal

__all__ = ["register"]

BatchSize = Annotated[
    int, typer.Option("--batch-size", min=1, help="Rows per batch (one transaction each).")
]


def register(app: typer.Typer) -> None:
    """Add the encryption commands to ``app``."""
    app.command(
        epilog=examples("encrypt", "--url postgresql://app@db.internal/app encrypt")
        + f"\n\nThe key is the first of {KEYS_ENV_VAR} (comma-separated Fernet keys)."
    )(encrypt)
    app.command(
        name="rotate-key",
        epilog=examples("rotate-key")
        + f"\n\nSet {KEYS_ENV_VAR}=NEW,OLD first; when it reports 0 deferred, drop OLD.",
    )(rotate_key)
    app.command(epilog=examples("decrypt"))(decrypt)


def encrypt(ctx: typer.Context, batch_size: BatchSize = 500) -> None:
    """Seal every plaintext secret in the table under the first key of ZOHO_TOKEN_STORE_KEYS.

    Resumable: run it again after an interruption and it carries on. The app
    keeps working meanwhile, as long as its stores have the key.
    """
    keyring = _keyring()
    _run(ctx, keyring, keyring, batch_size, command="encrypt", verb="sealed")


def rotate_key(ctx: typer.Context, batch_size: BatchSize = 500) -> None:
    """Re-seal every secret under the first key of ZOHO_TOKEN_STORE_KEYS.

    The other keys open what was sealed before. Resumable, like encrypt.
    """
    keyring = _keyring()
    _run(ctx, keyring, keyring, batch_size, command="rotate-key", verb="re-sealed")


def decrypt(ctx: typer.Context, batch_size: BatchSize = 500) -> None:
    """Turn every sealed secret back into plaintext (the keys open them).

    Needed before downgrading below revision 0003. Resumable, like encrypt.
    """
    _run(ctx, _keyring(), PlainCodec(), batch_size, command="decrypt", verb="decrypted")


def _keyring() -> Keyring:
    codec = codec_from(None)
    if not isinstance(codec, Keyring):
        fail(f"set {KEYS_ENV_VAR} to the encryption keys (comma-separated), the new key first")
    return codec


def _run(
    ctx: typer.Context,
    opener: Codec,
    sealer: Codec,
    batch_size: int,
    *,
    command: str,
    verb: str,
) -> None:
    """Re-seal every row from ``opener`` to ``sealer`` and print what was done.

    A table that is not a token table is refused (``SchemaMissingError``,
    named after ``command``) before any row is read or written.
    """
    state = settings(ctx)
    store = state.store()
    try:
        TokenTable(store.engine, state.table).check(command)
        with store.engine.connect() as conn:
            total = pending_rows(conn, store.table, sealer.key_id)
        progress = Progress(
            TextColumn(verb.replace("sealed", "sealing").replace("decrypted", "decrypting")),
            BarColumn(),
            MofNCompleteColumn(),
            console=err(),
            transient=True,
            disable=total == 0 or not err().is_terminal,
        )
        with progress:
            task = progress.add_task(verb, total=total)
            report = reseal(
                store.engine,
                store.table,
                opener,
                sealer,
                batch_size=batch_size,
                progress=lambda done: progress.advance(task, done),
            )
    finally:
        store.close()
    _summary(report, state.table, verb)


def _summary(report: ResealReport, table: str, verb: str) -> None:
    target = f"key {report.target}" if report.target is not None else "plaintext"
    out().print(
        f"{table}: {report.resealed} row(s) {verb} ({target}) in {report.batches} batch(es); "
        f"{report.deferred} deferred",
        markup=False,
    )
    if report.deferred:
        fail(f"{report.deferred} row(s) kept changing while this ran: run the same command again")
