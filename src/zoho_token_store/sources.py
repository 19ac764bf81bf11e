"""Reading the SDK's own stores: a FileStore CSV file, or a DBStore table at any URL.

A FileStore file is read one line at a time (FileStore never writes a value
with a line break in it), so a malformed line is reported by its number and
costs nothing but itself. A DBStore table is only read.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import column, inspect, select, table
from sqlalchemy import exc as sa_exc

from zoho_token_store.engine import make_engine, resolve_url
from zoho_token_store.errors import TokenStoreError, wrap_database_error
from zoho_token_store.mapping import MAX_TOKEN_CHARS
from zoho_token_store.records import FIELDS, Record

__all__ = [
    "FIELD_SIZE_LIMIT",
    "FILESTORE_HEADER",
    "Problem",
    "SourceRows",
    "TransferError",
    "read_dbstore_table",
    "read_filestore_csv",
]

# FileStore's header (zohocrmsdk Constants): redirect_url is "redirect_uri" there.
FILESTORE_HEADER = [*FIELDS[:8], "redirect_uri", FIELDS[9]]
# The longest value the store accepts (a secret). The csv module's own limit
# is 128 KiB, which would skip a token that export wrote and the store holds.
FIELD_SIZE_LIMIT = MAX_TOKEN_CHARS
_SOURCE_TABLE = re.compile(r"[A-Za-z0-9_]{1,64}")


class TransferError(TokenStoreError):
    """An import or export cannot start: a missing source, a file that exists, ..."""


@dataclass(frozen=True)
class Problem:
    """Something about one input row; ``rejected`` rows could not be imported at all."""

    where: str
    reason: str
    rejected: bool = False


@dataclass
class SourceRows:
    """What was read from a source: the rows, and the lines that could not be read."""

    description: str
    records: list[Record] = field(default_factory=list)
    malformed: list[Problem] = field(default_factory=list)


# Reading ---------------------------------------------------------------------------------


def read_filestore_csv(path: Path) -> SourceRows:
    """The rows of a FileStore CSV file, 10-column or older 9-column, header or not.

    A field may be as long as the store accepts (:data:`FIELD_SIZE_LIMIT`);
    a longer one makes its line malformed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TransferError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    with _csv_field_size_limit(FIELD_SIZE_LIMIT):
        return _filestore_rows(str(path), data)


@contextmanager
def _csv_field_size_limit(limit: int) -> Iterator[None]:
    """Let the csv module read fields of up to ``limit`` characters inside the block.

    ``csv.field_size_limit`` is one setting for the whole process, so the
    previous value is put back on the way out; and it is never lowered, so
    code elsewhere that raised it further keeps what it relies on.
    """
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, limit))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _filestore_rows(description: str, data: bytes) -> SourceRows:
    """Each line of ``data`` read on its own: a malformed line costs only itself."""
    rows = SourceRows(description=description)
    header_seen = False
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"line {number}"
        try:
            line = raw.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            rows.malformed.append(Problem(where, "malformed: not UTF-8 text", rejected=True))
            continue
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            rows.malformed.append(Problem(where, f"malformed CSV: {exc}", rejected=True))
            continue
        if not header_seen and [c.strip().lower() for c in cells[:2]] == ["id", "user_name"]:
            header_seen = True
            continue
        header_seen = True
        if len(cells) not in (9, 10):
            rows.malformed.append(
                Problem(
                    where,
                    f"malformed: {len(cells)} fields, expected 10 (or 9 in older files)",
                    rejected=True,
                )
            )
            continue
        rows.records.append(Record.from_values(where, dict(zip(FIELDS, cells))))
    return rows


def read_dbstore_table(url: str, table_name: str) -> SourceRows:
    """The rows of the DBStore table ``table_name`` at ``url``, which is only read."""
    if not _SOURCE_TABLE.fullmatch(table_name):
        raise TransferError(f"invalid source table name {table_name!r}")
    resolved = resolve_url(url)
    where = resolved.render_as_string(hide_password=True)
    engine = make_engine(resolved)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            if not inspector.has_table(table_name):
                raise TransferError(f"import: no table {table_name!r} in {where}")
            present = {c["name"].lower() for c in inspector.get_columns(table_name)}
            missing = [name for name in FIELDS if name != "api_domain" and name not in present]
            if missing:
                raise TransferError(
                    f"import: {table_name!r} in {where} is not a DBStore table "
                    f"(no column {', '.join(missing)})"
                )
            columns = [name for name in FIELDS if name in present]
            source = table(table_name, *(column(name) for name in columns))
            result = conn.execute(select(source).order_by(source.c.id)).mappings().all()
    except sa_exc.SQLAlchemyError as exc:
        raise wrap_database_error("import", exc) from exc
    finally:
        engine.dispose()
    rows = SourceRows(description=f"{table_name} at {where}")
    rows.records = [Record.from_values(f"id {row['id']!r}", row) for row in result]
    return rows
