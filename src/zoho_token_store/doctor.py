"""Health checks of a token table: what ``zoho-token-store doctor`` reports.

Each check is ``ok``, ``info`` (a fact worth knowing), ``warn`` (tokens that
will need a user to authorize again) or ``fail`` (the store cannot work as
designed: no connection, no table, a schema behind the package, a missing
index or constraint, two rows for one user). A database is healthy when no
check fails.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, MetaData, Table, and_, func, inspect, select
from sqlalchemy import exc as sa_exc

from zoho_token_store import migrate
from zoho_token_store.clock import db_epoch_ms
from zoho_token_store.errors import wrap_database_error
from zoho_token_store.models import token_table

__all__ = ["Check", "Diagnosis", "Status", "diagnose"]

_SHOWN = 5


class Status(enum.Enum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass
class Diagnosis:
    url: str
    table: str
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when no check failed."""
        return all(check.status is not Status.FAIL for check in self.checks)

    @property
    def clean(self) -> bool:
        """True when no check failed or warned."""
        return all(check.status in (Status.OK, Status.INFO) for check in self.checks)

    def add(self, name: str, status: Status, detail: str) -> Status:
        self.checks.append(Check(name, status, detail))
        return status


def diagnose(engine: Engine, table_name: str) -> Diagnosis:
    """Run every check on the token table ``table_name``; stop at the first that blocks the rest."""
    where = engine.url.render_as_string(hide_password=True)
    report = Diagnosis(url=where, table=table_name)
    try:
        with engine.connect() as conn:
            _checks(conn, table_name, report)
    except sa_exc.SQLAlchemyError as exc:
        stage = "connect" if not report.checks else "query"
        report.add(stage, Status.FAIL, wrap_database_error(stage, exc).error_message)
    return report


def _checks(conn: Connection, table_name: str, report: Diagnosis) -> None:
    version = ".".join(str(part) for part in conn.dialect.server_version_info or ())
    report.add("connect", Status.OK, f"{conn.dialect.name} {version}".strip())
    inspector = inspect(conn)
    if not inspector.has_table(table_name):
        report.add("table", Status.FAIL, f"no table {table_name!r}: run `zoho-token-store upgrade`")
        return
    report.add("table", Status.OK, f"{table_name!r} exists")
    _revision(conn, table_name, report)
    expected = token_table(MetaData(), table_name)
    if not _structure(inspector, expected, report):
        return  # without its columns, the table cannot be queried as a token table
    _drift(conn, expected, report)
    _data(conn, expected, report)


def _revision(conn: Connection, table_name: str, report: Diagnosis) -> None:
    context = MigrationContext.configure(
        conn, opts={"version_table": migrate.version_table_name(table_name)}
    )
    current, head = context.get_current_revision(), migrate.head()
    if current == head:
        report.add("revision", Status.OK, f"{current} (head)")
    elif current is None:
        report.add(
            "revision",
            Status.FAIL,
            "no revision recorded: the migrations did not make this table (an SDK DBStore "
            "table?); `zoho-token-store upgrade` adopts it",
        )
    else:
        report.add(
            "revision", Status.FAIL, f"{current}, head is {head}: run `zoho-token-store upgrade`"
        )


def _structure(inspector: Any, expected: Table, report: Diagnosis) -> bool:
    """Check the columns, primary key and indexes; False when columns are missing."""
    name = expected.name
    present = {c["name"] for c in inspector.get_columns(name)}
    wanted = {c.name for c in expected.columns}
    missing, extra = sorted(wanted - present), sorted(present - wanted)
    if missing:
        report.add("columns", Status.FAIL, f"missing: {', '.join(missing)}")
        return False
    report.add(
        "columns",
        Status.WARN if extra else Status.OK,
        f"{len(wanted)} expected" + (f"; not ours: {', '.join(extra)}" if extra else " present"),
    )
    primary = inspector.get_pk_constraint(name).get("constrained_columns") or []
    report.add(
        "primary key",
        Status.OK if primary == ["id"] else Status.FAIL,
        f"on {', '.join(primary) or 'nothing'}" + ("" if primary == ["id"] else ", expected id"),
    )
    indexes = {
        (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
        for ix in inspector.get_indexes(name)
    }
    lacking = [
        f"{ix.name} ({'unique ' if ix.unique else ''}on {', '.join(c.name for c in ix.columns)})"
        for ix in sorted(expected.indexes, key=lambda ix: str(ix.name))
        if (ix.name, tuple(c.name for c in ix.columns), bool(ix.unique)) not in indexes
    ]
    if lacking:
        report.add("indexes", Status.FAIL, f"missing: {'; '.join(lacking)}")
    else:
        report.add("indexes", Status.OK, f"{len(expected.indexes)} present, user_name unique")
    return True


def _drift(conn: Connection, expected: Table, report: Diagnosis) -> None:
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "include_name": lambda name, kind, _parent: kind != "table" or name == expected.name,
        },
    )
    diffs = compare_metadata(context, expected.metadata)
    if diffs:
        shown = "; ".join(_describe(diff) for diff in diffs[:_SHOWN])
        report.add("schema drift", Status.FAIL, f"{len(diffs)} differences: {shown}")
    else:
        report.add("schema drift", Status.OK, "none: the table matches the package's models")


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come as a list of tuples
        diff = diff[0]
    kind = diff[0]
    if kind.startswith("modify_"):
        return f"{kind} {diff[3]}"
    target = diff[1]
    return f"{kind} {getattr(target, 'name', target)}"


def _data(conn: Connection, table: Table, report: Diagnosis) -> None:
    c = table.c

    def scalar(query: Any) -> int:
        return int(conn.execute(query).scalar_one())

    def ids(condition: Any) -> list[str]:
        query = select(c.id).where(condition).order_by(c.id).limit(_SHOWN + 1)
        return [str(value) for value in conn.execute(query).scalars()]

    def count(condition: Any) -> int:
        return scalar(select(func.count()).select_from(table).where(condition))

    report.add("rows", Status.INFO, f"{scalar(select(func.count()).select_from(table))} tokens")
    duplicates = (
        select(c.user_name)
        .where(c.user_name.is_not(None))
        .group_by(c.user_name)
        .having(func.count() > 1)
        .order_by(c.user_name)
    )
    names = list(conn.execute(duplicates).scalars())
    report.add(
        "duplicate users",
        Status.FAIL if names else Status.OK,
        f"{len(names)}: {_list(names)}" if names else "none",
    )
    now = scalar(select(db_epoch_ms()))
    no_refresh = c.refresh_token.is_(None)
    missing = count(no_refresh)
    report.add(
        "no refresh token",
        Status.WARN if missing else Status.OK,
        f"{missing} (ids {_list(ids(no_refresh))}): once the access token expires, "
        "the user must authorize again"
        if missing
        else "none",
    )
    expired = c.expiry_time < now
    report.add(
        "expired",
        Status.INFO,
        f"{count(expired)} access tokens expired; the SDK refreshes them on next use",
    )
    dead = and_(expired, no_refresh)
    unusable = count(dead)
    report.add(
        "expired, no refresh token",
        Status.WARN if unusable else Status.OK,
        f"{unusable} unusable (ids {_list(ids(dead))})" if unusable else "none",
    )
    unknown = and_(c.expiry_time.is_(None), c.access_token.is_not(None))
    undated = count(unknown)
    report.add(
        "no expiry",
        Status.WARN if undated else Status.OK,
        f"{undated} access tokens without an expiry (ids {_list(ids(unknown))}): "
        "the SDK never refreshes them"
        if undated
        else "none",
    )


def _list(values: list[str]) -> str:
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    return shown + (", ..." if len(values) > _SHOWN else "")
