"""Import into a store from the SDK's FileStore or DBStore, and export to FileStore's CSV.

Imported rows (read by sources.py) go through the store's own ``save_token``,
so they are validated and stored exactly as the SDK's saves are. An import can
be run again: a row already stored as it is counts as unchanged, and a row
older than the stored token (an earlier expiry) never overwrites it.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from zoho_token_store._sdk import OAuthToken, UserSignature
from zoho_token_store.admin import TokenTable
from zoho_token_store.errors import InvalidTokenError
from zoho_token_store.mapping import read_token
from zoho_token_store.records import FIELDS, SECRET_FIELDS, Merge, Record, merge_duplicates
from zoho_token_store.sources import FILESTORE_HEADER, Problem, SourceRows, TransferError
from zoho_token_store.store import SQLAlchemyTokenStore

__all__ = ["ImportReport", "export_filestore_csv", "import_records"]


@dataclass
class ImportReport:
    """What an import did, row by row."""

    source: str
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    @property
    def rejected(self) -> list[Problem]:
        """Rows that were malformed or invalid: the input needs fixing."""
        return [p for p in self.skipped if p.rejected]


# Importing -------------------------------------------------------------------------------


def import_records(
    store: SQLAlchemyTokenStore,
    source: SourceRows,
    *,
    on_record: Callable[[], None] | None = None,
) -> ImportReport:
    """Upsert ``source``'s rows through ``store.save_token``; report what happened to each.

    A user's duplicate rows are merged first (records.merge_duplicates).
    ``on_record`` is called once per row handled, for a progress display.
    """
    TokenTable(store.engine, store.table.name).check("import")
    report = ImportReport(source=source.description, skipped=list(source.malformed))
    records, report.merges = merge_duplicates(source.records)
    for record in records:
        _import_one(store, record, report)
        if on_record is not None:
            on_record()
    return report


def _import_one(store: SQLAlchemyTokenStore, record: Record, report: ImportReport) -> None:
    where = record.where
    if record.bad_expiry:
        # The value is not shown: in a file with shifted columns it can be a token.
        report.notes.append(
            Problem(where, "expiry_time is not epoch milliseconds: imported without an expiry")
        )
    token = _token(record)
    try:
        fields = read_token(token, "import")
    except InvalidTokenError as exc:
        report.skipped.append(Problem(where, _reason(exc), rejected=True))
        return
    if not fields.has_credential:
        report.skipped.append(
            Problem(where, "no access, refresh or grant token to import", rejected=True)
        )
        return
    key = fields.key()
    if key is None:
        report.skipped.append(Problem(where, _UNMATCHABLE, rejected=True))
        return
    stored = _stored(store, record, by_id=key.column == "id")
    if stored is None:
        taken = (
            key.column != "id"
            and record.id is not None
            and store.find_token_by_id(record.id) is not None
        )
        if taken:
            token.set_id(None)
            report.notes.append(
                Problem(where, "its id belongs to another stored token: saved with a new id")
            )
        _save(store, token, where, report, report.new)
        return
    if _same(stored, record):
        report.unchanged.append(where)
        return
    if _newer(stored, record):
        report.skipped.append(
            Problem(where, "the stored token is newer (it expires later): left as it is")
        )
        return
    token.set_id(stored.get_id())
    _save(store, token, where, report, report.updated)


_UNMATCHABLE = (
    "no user name, no id, and no client id and secret beside its token: "
    "it could not be matched to a stored token"
)


def _stored(store: SQLAlchemyTokenStore, record: Record, *, by_id: bool) -> OAuthToken | None:
    """The stored token ``record`` refers to, found as the SDK finds it (through the store)."""
    if by_id:
        return store.find_token_by_id(str(record.id))
    probe = _token(record)
    probe.set_id(None)
    found = store.find_token(probe)
    return store.find_token_by_id(found.get_id()) if found is not None else None


def _save(
    store: SQLAlchemyTokenStore,
    token: OAuthToken,
    where: str,
    report: ImportReport,
    done: list[str],
) -> None:
    try:
        store.save_token(token)
    except InvalidTokenError as exc:
        report.skipped.append(Problem(where, _reason(exc), rejected=True))
        return
    done.append(where)


def _reason(exc: InvalidTokenError) -> str:
    message: str = exc.error_message
    prefixed = message.startswith(("import: ", "save_token: "))
    return message.split(": ", 1)[1] if prefixed else message


def _token(record: Record) -> OAuthToken:
    token = OAuthToken(id="placeholder")
    token.set_id(record.id)
    token.set_user_signature(UserSignature(record.user_name) if record.user_name else None)
    token.set_client_id(record.client_id)
    token.set_client_secret(record.client_secret)
    token.set_refresh_token(record.refresh_token)
    token.set_access_token(record.access_token)
    token.set_grant_token(record.grant_token)
    expiry = record.expiry_ms
    token.set_expires_in(str(expiry) if expiry is not None else None)
    token.set_redirect_url(record.redirect_url)
    token.set_api_domain(record.api_domain)
    return token


def _fields(token: OAuthToken) -> dict[str, str | None]:
    signature = token.get_user_signature()
    return {
        "user_name": signature.get_name() if signature is not None else None,
        "client_id": token.get_client_id(),
        "client_secret": token.get_client_secret(),
        "refresh_token": token.get_refresh_token(),
        "access_token": token.get_access_token(),
        "grant_token": token.get_grant_token(),
        "expiry_time": token.get_expires_in(),
        "redirect_url": token.get_redirect_url(),
        "api_domain": token.get_api_domain(),
    }


def _same(stored: OAuthToken, record: Record) -> bool:
    """True when every field the record carries is stored as it is."""
    have = _fields(stored)
    for name in FIELDS[1:]:
        value = getattr(record, name)
        if name == "expiry_time":
            expiry = record.expiry_ms
            value = str(expiry) if expiry is not None else None
        if value is not None and value != have[name]:
            return False
    return True


def _newer(stored: OAuthToken, record: Record) -> bool:
    """True when the stored token is fresher than the record: its access token expires later."""
    text = stored.get_expires_in()
    if not text:
        return False
    expiry = int(text)
    if record.expiry_ms is not None:
        return expiry > record.expiry_ms
    return record.access_token is not None and record.access_token != stored.get_access_token()


# Exporting -------------------------------------------------------------------------------


def export_filestore_csv(
    store: SQLAlchemyTokenStore,
    path: Path,
    *,
    include_secrets: bool = False,
    overwrite: bool = False,
) -> int:
    """Write every token to ``path`` as the SDK's FileStore does; return how many.

    The tokens are read through the store, so an encrypted table is exported
    in the clear when the store has its keys. Without ``include_secrets`` the
    client secret and the tokens are left empty. The file is created with
    mode 0600 (and replaced whole, so no other process ever sees it half
    written).
    """
    if path.exists() and not overwrite:
        raise TransferError(f"export: {str(path)!r} exists; pass --force to replace it")
    TokenTable(store.engine, store.table.name).check("export")
    tokens = store.get_tokens()
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise TransferError(f"export: cannot write to {str(directory)!r}: {exc.strerror}") from None
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(FILESTORE_HEADER)
            writer.writerows(_csv_row(token, include_secrets) for token in tokens)
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    return len(tokens)


def _csv_row(token: OAuthToken, include_secrets: bool) -> list[str]:
    values = {"id": token.get_id(), **_fields(token)}
    return [
        ""
        if values[name] is None or (name in SECRET_FIELDS and not include_secrets)
        else str(values[name])
        for name in FIELDS
    ]
