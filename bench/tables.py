"""The tables and the CSV file a run measures: created, grown in bulk, and dropped.

- This store's table on each database comes from the package's migrations, so
  it has exactly the production schema and indexes. The floor reads and
  writes the same table.
- With ``--encryption``, each database gets a second such table whose rows
  are sealed under a key made for the run (Fernet secrets, HMAC digests,
  ``key_id``), exactly as a store with that key writes them; the encrypted
  store reads and writes it.
- The SDK's DBStore gets a table of its own on MariaDB, made with the SDK's
  documented DDL (no secondary index).
- The SDK's FileStore gets a CSV file with the same ten columns.

Rows are added with multi-row INSERTs in transactions of ``BATCH`` rows (and
CSV appends), never through a store. Every table and file made here is
removed by :meth:`Tables.drop`, also after a failure.
"""

from __future__ import annotations

import csv
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, Engine, MetaData, Table, create_engine, text
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore

from bench.dataset import TableState, sdk_rows, store_rows
from bench.settings import Settings
from zoho_token_store import migrate
from zoho_token_store.crypto import Codec
from zoho_token_store.engine import make_engine, resolve_url
from zoho_token_store.models import token_table
from zoho_token_store.records import FIELDS

__all__ = ["SDK_TABLE_DDL", "CsvFile", "SdkTable", "StoreTable", "Tables"]

BATCH = 5_000

# The SDK's DBStore table, as its documentation gives it (a table name of our own).
SDK_TABLE_DDL = (
    "CREATE TABLE {name} (id varchar(10) NOT NULL PRIMARY KEY, user_name varchar(255), "
    "client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), "
    "access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), "
    "redirect_url varchar(255), api_domain varchar(255))"
)
SDK_COLUMNS = FIELDS

T = TypeVar("T")


def _batches(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@dataclass
class StoreTable:
    """This store's table on one database, shared by the store and the floor."""

    backend: str
    url: URL
    name: str
    state: TableState = field(default_factory=TableState)
    # The keys its rows are sealed with; empty: a plaintext table.
    keys: tuple[str, ...] = ()

    @property
    def encrypted(self) -> bool:
        return bool(self.keys)

    def codec(self) -> Codec | None:
        """How its rows are stored: a keyring of ``keys``, or ``None`` for plaintext."""
        if not self.keys:
            return None
        from zoho_token_store.crypto import Keyring

        return Keyring(self.keys)

    def create(self) -> None:
        migrate.upgrade(self.url, table_name=self.name)

    def grow(self, rows: int) -> None:
        """Add rows until the table holds ``rows``; then refresh the planner's statistics."""
        if rows <= self.state.rows:
            return
        table = token_table(MetaData(), self.name)
        # A transactional engine: in the store's autocommit mode every row of
        # an executemany would be a transaction (and an fsync) of its own.
        engine = create_engine(self.url)
        try:
            for batch in _batches(store_rows(self.state.rows, rows, self.codec()), BATCH):
                with engine.begin() as conn:
                    conn.execute(table.insert(), batch)
        finally:
            engine.dispose()
        self.state.rows = rows
        _analyze(self.url, self.name)

    def drop(self) -> None:
        """Downgrade to base (drops the table), then drop the version table.

        An encrypted table is emptied first: the downgrade refuses to drop
        sealed rows (they would be unreadable without their key id), and the
        run's rows and key are throwaway.
        """
        engine = make_engine(self.url)
        try:
            if self.encrypted:
                with engine.connect() as conn:
                    conn.execute(token_table(MetaData(), self.name).delete())
            migrate.downgrade(self.url, "base", table_name=self.name)
            with engine.connect() as conn:
                Table(migrate.version_table_name(self.name), MetaData()).drop(conn, checkfirst=True)
        finally:
            engine.dispose()


@dataclass
class SdkTable:
    """The SDK DBStore's own table on MariaDB."""

    url: URL
    name: str
    state: TableState = field(default_factory=TableState)

    def create(self) -> None:
        with _autocommit(self.url) as engine, engine.connect() as conn:
            conn.exec_driver_sql(SDK_TABLE_DDL.format(name=self.name))

    def grow(self, rows: int) -> None:
        if rows <= self.state.rows:
            return
        columns = ", ".join(SDK_COLUMNS)
        values = ", ".join(f":{c}" for c in SDK_COLUMNS)
        insert = text(f"INSERT INTO {self.name} ({columns}) VALUES ({values})")  # noqa: S608
        engine = create_engine(self.url)
        try:
            for batch in _batches(sdk_rows(self.state.rows, rows), BATCH):
                with engine.begin() as conn:
                    conn.execute(insert, [dict(zip(SDK_COLUMNS, row)) for row in batch])
        finally:
            engine.dispose()
        self.state.rows = rows
        _analyze(self.url, self.name)

    def drop(self) -> None:
        with _autocommit(self.url) as engine, engine.connect() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.name}")


@dataclass
class CsvFile:
    """The SDK FileStore's CSV file: a header row, then the ten columns per token."""

    path: Path
    state: TableState = field(default_factory=TableState)

    def create(self) -> None:
        FileStore(str(self.path))  # writes the header row the SDK expects

    def grow(self, rows: int) -> None:
        if rows <= self.state.rows:
            return
        # The dialect FileStore itself writes with.
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file, delimiter=",", quotechar='"', quoting=csv.QUOTE_MINIMAL)
            writer.writerows(sdk_rows(self.state.rows, rows))
        self.state.rows = rows

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Tables:
    """Every table and file of one run, named after the process so runs never collide."""

    settings: Settings
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="zts-bench-")))
    store: dict[str, StoreTable] = field(default_factory=dict)
    encrypted: dict[str, StoreTable] = field(default_factory=dict)
    sdk: SdkTable | None = None
    csv: CsvFile | None = None
    _created: list[StoreTable | SdkTable | CsvFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = f"zts_bench_{os.getpid()}"
        urls = {
            "sqlite": f"sqlite:///{self.workdir / 'tokens.db'}",
            "postgresql": self.settings.postgres_url,
            "mariadb": self.settings.mysql_url,
        }
        keys = (_new_key(),) if self.settings.encryption else ()
        for backend, url in urls.items():
            if backend in self.settings.backends:
                self.store[backend] = StoreTable(backend, resolve_url(url), tag)
                if keys:
                    self.encrypted[backend] = StoreTable(
                        backend, resolve_url(url), f"{tag}_enc", keys=keys
                    )
        if "mariadb" in self.settings.backends:
            self.sdk = SdkTable(resolve_url(self.settings.mysql_url), f"{tag}_sdk")
        if "file" in self.settings.backends:
            self.csv = CsvFile(self.workdir / "tokens.csv")

    @property
    def sqlite_path(self) -> Path:
        return self.workdir / "tokens.db"

    def all(self) -> list[StoreTable | SdkTable | CsvFile]:
        found: list[StoreTable | SdkTable | CsvFile] = [
            *self.store.values(),
            *self.encrypted.values(),
        ]
        if self.sdk is not None:
            found.append(self.sdk)
        if self.csv is not None:
            found.append(self.csv)
        return found

    def create(self) -> None:
        for item in self.all():
            self._created.append(item)
            item.create()

    def grow(self, rows: int) -> dict[str, float]:
        """Grow everything to ``rows`` rows; return the seconds each took, by label."""
        took: dict[str, float] = {}
        for item in self.all():
            start = time.perf_counter()
            item.grow(rows)
            took[_label(item)] = time.perf_counter() - start
        return took

    def drop(self) -> list[str]:
        """Remove everything that was created; return the errors, if any, as text."""
        errors: list[str] = []
        for item in reversed(self._created):
            try:
                item.drop()
            except Exception as exc:  # keep cleaning up the rest
                errors.append(f"{_label(item)}: {type(exc).__name__}: {exc}")
        self._created.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return errors


def _label(item: StoreTable | SdkTable | CsvFile) -> str:
    if isinstance(item, StoreTable):
        kind = "encrypted table" if item.encrypted else "table"
        return f"{item.backend} {kind} {item.name}"
    if isinstance(item, SdkTable):
        return f"DBStore table {item.name}"
    return f"CSV {item.path.name}"


def _new_key() -> str:
    """A Fernet key for one run: the benchmark's sealed rows are worth nothing after it."""
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise SystemExit(
            "--encryption needs the cryptography package: pip install -e '.[bench]'"
        ) from None
    return Fernet.generate_key().decode("ascii")


class _autocommit:
    """An engine in autocommit mode for DDL and maintenance, disposed on exit."""

    def __init__(self, url: URL) -> None:
        self.engine: Engine = make_engine(url)

    def __enter__(self) -> Engine:
        return self.engine

    def __exit__(self, *exc: Any) -> None:
        self.engine.dispose()


def _analyze(url: URL, name: str) -> None:
    """Bring the planner's statistics (and PostgreSQL's visibility map) up to date."""
    backend = url.get_backend_name()
    statement = {
        "postgresql": f"VACUUM ANALYZE {name}",
        "mysql": f"ANALYZE TABLE {name}",
        "mariadb": f"ANALYZE TABLE {name}",
        "sqlite": f"ANALYZE {name}",
    }[backend]
    with _autocommit(url) as engine, engine.connect() as conn:
        result = conn.exec_driver_sql(statement)
        if result.returns_rows:
            result.all()
