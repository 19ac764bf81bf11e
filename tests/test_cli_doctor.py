"""``doctor`` on SQLite, PostgreSQL and MariaDB: healthy tables, warnings and failures."""

# The shared fixtures are imported by name, and pytest passes them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Column, Connection, Index, MetaData, String, Table, text

from test_cli_support import (  # noqa: F401
    DBSTORE_DDL,
    CliDb,
    _cli_backend,
    bare_db,
    cli_db,
    invoke,
    now_ms,
)
from tokens import full_token, make_token
from zoho_token_store import migrate


def doctor(db: CliDb, *args: str) -> tuple[int, dict[str, Any]]:
    result = db.invoke("doctor", "--json", *args)
    report = json.loads(result.stdout)
    return result.exit_code, report


def drop_index(conn: Connection, table: str, column: str) -> None:
    columns = Table(table, MetaData(), Column(column, String(255))).c
    Index(f"ix_{table}_{column}", columns[column]).drop(conn)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["status"] for check in report["checks"]}


def details(report: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["detail"] for check in report["checks"]}


def test_a_healthy_table(cli_db: CliDb) -> None:
    store = cli_db.store()
    try:
        store.save_token(full_token("ada@example.com", expires=str(now_ms() + 3_600_000)))
        store.save_token(full_token("bob@example.com", expires=str(now_ms() - 3_600_000)))
    finally:
        store.close()
    code, report = doctor(cli_db)
    assert code == 0
    assert report["healthy"] is True and report["table"] == cli_db.table
    assert statuses(report) == {
        "connect": "ok",
        "table": "ok",
        "revision": "ok",
        "columns": "ok",
        "primary key": "ok",
        "indexes": "ok",
        "schema drift": "ok",
        "rows": "info",
        "duplicate users": "ok",
        "no refresh token": "ok",
        "expired": "info",
        "expired, no refresh token": "ok",
        "no expiry": "ok",
    }
    found = details(report)
    assert found["revision"] == f"{migrate.head()} (head)"
    assert found["rows"] == "2 tokens"
    assert found["expired"].startswith("1 access tokens expired")

    table = cli_db.invoke("doctor")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].startswith(f"{cli_db.table} at ")
    assert table.stdout.splitlines()[-1] == "healthy"


def test_tokens_that_need_a_new_grant_warn_and_fail_only_with_strict(cli_db: CliDb) -> None:
    store = cli_db.store()
    try:
        store.save_token(make_token(user="gina@example.com", grant="1000.grant.0123456789", id="g"))
        store.save_token(
            make_token(user="al@example.com", access="1000.a.al", expires="1000", id="a")
        )
        store.save_token(make_token(user="nx@example.com", access="1000.a.nx", id="n"))
    finally:
        store.close()
    code, report = doctor(cli_db)
    assert code == 0 and report["healthy"] is True
    found, status = details(report), statuses(report)
    assert status["no refresh token"] == "warn"
    assert found["no refresh token"].startswith("3 (ids 'a', 'g', 'n'): ")
    assert status["expired, no refresh token"] == "warn"
    assert found["expired, no refresh token"] == "1 unusable (ids 'a')"
    assert status["no expiry"] == "warn"
    assert found["no expiry"].startswith("1 access tokens without an expiry (ids 'n')")

    strict_code, strict = doctor(cli_db, "--strict")
    assert strict_code == 1 and strict["healthy"] is False


def test_a_missing_index_fails(bare_db: CliDb) -> None:
    migrate.upgrade(bare_db.url, table_name=bare_db.table)
    engine = bare_db.engine()
    try:
        with engine.connect() as conn:
            drop_index(conn, bare_db.table, "grant_token_digest")
    finally:
        engine.dispose()
    code, report = doctor(bare_db)
    assert code == 1 and report["healthy"] is False
    assert statuses(report)["indexes"] == "fail"
    assert details(report)["indexes"] == (
        f"missing: ix_{bare_db.table}_grant_token_digest (on grant_token_digest)"
    )
    assert statuses(report)["schema drift"] == "fail"
    text_report = bare_db.invoke("doctor")
    assert text_report.exit_code == 1
    assert text_report.stdout.splitlines()[-1] == "NOT healthy"


def test_duplicate_users_fail(bare_db: CliDb) -> None:
    migrate.upgrade(bare_db.url, table_name=bare_db.table)
    engine = bare_db.engine()
    try:
        with engine.connect() as conn:
            drop_index(conn, bare_db.table, "user_name")
            for row_id in ("1", "2"):
                conn.execute(
                    text(
                        f"INSERT INTO {bare_db.table} (id, user_name, refresh_token, "  # noqa: S608
                        "created_at, updated_at) VALUES (:id, 'ada', '1000.r', "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"id": row_id},
                )
    finally:
        engine.dispose()
    code, report = doctor(bare_db)
    assert code == 1
    assert statuses(report)["indexes"] == "fail"
    assert details(report)["indexes"] == (
        f"missing: ix_{bare_db.table}_user_name (unique on user_name)"
    )
    assert statuses(report)["duplicate users"] == "fail"
    assert details(report)["duplicate users"] == "1: 'ada'"


def test_no_table(bare_db: CliDb) -> None:
    migrate.upgrade(bare_db.url, table_name=bare_db.table)  # the database exists
    result = invoke(bare_db.url, f"{bare_db.table}_absent", "doctor", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert statuses(report) == {"connect": "ok", "table": "fail"}
    assert details(report)["table"] == (
        f"no table '{bare_db.table}_absent': run `zoho-token-store upgrade`"
    )


def test_a_dbstore_table_is_not_healthy_until_adopted(bare_db: CliDb) -> None:
    engine = bare_db.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(DBSTORE_DDL.format(table=bare_db.table)))
    finally:
        engine.dispose()
    code, report = doctor(bare_db)
    assert code == 1
    assert statuses(report)["revision"] == "fail"
    assert "`zoho-token-store upgrade` adopts it" in details(report)["revision"]
    assert statuses(report)["columns"] == "fail"

    assert bare_db.invoke("upgrade").exit_code == 0
    assert doctor(bare_db)[0] == 0


def test_a_table_behind_the_package(bare_db: CliDb) -> None:
    migrate.upgrade(bare_db.url, "0001", table_name=bare_db.table)
    code, report = doctor(bare_db)
    assert code == 1
    assert details(report)["revision"] == (
        f"0001, head is {migrate.head()}: run `zoho-token-store upgrade`"
    )
    assert details(report)["columns"].startswith("missing: issued_at, ")
    assert "refresh_lease_until" in details(report)["columns"]


def test_an_unreachable_database() -> None:
    result = invoke("postgresql://postgres@127.0.0.1:1/test", None, "doctor", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert statuses(report) == {"connect": "fail"}
    assert details(report)["connect"].startswith("connect failed: OperationalError: ")
