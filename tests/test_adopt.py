"""Adopting a table made by the SDK's DBStore, in place, through ``upgrade``.

The table is created with the SDK README's DDL. On MariaDB it is filled by the
SDK's own ``DBStore`` class, bugs included; on every backend also by plain
INSERTs of the states those bugs leave. After the upgrade every token must be
readable through ``SQLAlchemyTokenStore`` and the schema must be exactly that
of a fresh ``upgrade head``.
"""

# The shared fixtures are imported by name, and pytest passes them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import logging
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException

from test_cli_support import (  # noqa: F401
    DBSTORE_COLUMNS,
    DBSTORE_DDL,
    OLD_DBSTORE_DDL,
    CliDb,
    bare_db,
    bare_mariadb,
    bare_postgresql,
    dbstore_for,
    drop_tables,
    insert_rows,
    leftovers,
    now_ms,
)
from tokens import CLIENT_ID, CLIENT_SECRET, as_dict, full_token, make_token
from zoho_token_store import adopt, migrate

HOUR = 3_600_000
URL = "https://app.example.com/oauth/callback"
DOMAIN = "https://www.zohoapis.com"
ADOPTION_LOGGER = "alembic.runtime.migration"


def create(db: CliDb, ddl: str = DBSTORE_DDL) -> None:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(ddl.format(table=db.table)))
    finally:
        engine.dispose()


def dbstore_rows(db: CliDb) -> list[tuple[Any, ...]]:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {db.table} ORDER BY id"))]  # noqa: S608
    finally:
        engine.dispose()


def upgrade(db: CliDb) -> adopt.AdoptionReport | None:
    """``upgrade head`` as migrate.upgrade runs it; the adoption report, if any."""
    engine = db.engine()
    try:
        config = migrate.alembic_config(engine, table_name=db.table)
        command.upgrade(config, "head")
        assert command.check(config) is None
        report = config.attributes.get(adopt.REPORT_KEY)
        assert report is None or isinstance(report, adopt.AdoptionReport)
        return report
    finally:
        engine.dispose()


def tokens_by_user(db: CliDb) -> dict[str, dict[str, str | None]]:
    store = db.store()
    try:
        found = [as_dict(t) for t in store.get_tokens()]
    finally:
        store.close()
    return {str(t["user_name"] or t["id"]): t for t in found if t is not None}


def schema(engine: Engine, table: str) -> dict[str, Any]:
    """The table's reflected schema, with its name written as T."""
    inspector = inspect(engine)

    def named(name: str | None) -> str | None:
        return name.replace(table, "T") if name else name

    options = inspector.get_table_options(table)
    return {
        "columns": [
            (c["name"], repr(c["type"]), c["nullable"], str(c.get("default")))
            for c in inspector.get_columns(table)
        ],
        "primary key": {
            **inspector.get_pk_constraint(table),
            "name": named(inspector.get_pk_constraint(table).get("name")),
        },
        "indexes": sorted(
            (named(ix["name"]), tuple(ix["column_names"]), bool(ix["unique"]))
            for ix in inspector.get_indexes(table)
        ),
        "unique constraints": [
            {k: named(v) if isinstance(v, str) else v for k, v in uc.items()}
            for uc in inspector.get_unique_constraints(table)
        ],
        "options": {k: v for k, v in options.items() if "charset" in k or "collate" in k},
    }


def assert_same_schema_as_fresh(db: CliDb) -> None:
    fresh = f"{db.table}_f"
    drop_tables(db.url, leftovers(fresh))
    engine = db.engine()
    try:
        migrate.upgrade(engine, table_name=fresh)
        assert schema(engine, db.table) == schema(engine, fresh)
        assert migrate.current(engine, table_name=db.table) == migrate.head()
    finally:
        engine.dispose()
        drop_tables(db.url, leftovers(fresh))


def assert_nothing_left_beside(db: CliDb) -> None:
    tables = set(inspect_tables(db))
    assert f"{db.table}_adopting" not in tables
    assert f"{db.table}_dbstore_old" not in tables


def inspect_tables(db: CliDb) -> list[str]:
    engine = db.engine()
    try:
        return list(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# The SDK's own DBStore, on MariaDB ----------------------------------------------------------------


def test_a_table_filled_by_the_sdks_dbstore_is_adopted_with_every_token(
    bare_mariadb: CliDb, caplog: pytest.LogCaptureFixture
) -> None:
    bare_db = bare_mariadb  # the SDK's DBStore runs on MySQL and MariaDB only
    create(bare_db)
    dbstore = dbstore_for(bare_db.url, bare_db.table)
    expiry = now_ms() + HOUR

    # ada is saved, then saved unchanged by a token object without its id
    # (a new process): DBStore finds no *changed* row, and inserts another.
    dbstore.save_token(full_token("ada@example.com", 1, expires=str(expiry)))
    dbstore.save_token(full_token("ada@example.com", 1, expires=str(expiry)))
    # A refresh changes ada's token: "UPDATE ... LIMIT 1" changes one of her rows.
    dbstore.save_token(full_token("ada@example.com", 2, expires=str(expiry + HOUR)))
    # A token with no user name, found by its refresh token and client credentials.
    dbstore.save_token(
        make_token(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh="1000.refresh.nobody.0123456789abcdef",
            access="1000.access.nobody.0123456789abcdef",
            expires=str(expiry),
        )
    )
    # bob's expiry is whatever string the token held.
    bob = full_token("bob@example.com", 1, expires="soon")
    dbstore.save_token(bob)
    users = [f"user{n}@example.com" for n in range(3, 12)]
    saved, failed = [], []
    for n, user in enumerate(users, start=3):
        try:
            dbstore.save_token(full_token(user, n, expires=str(expiry)))
            saved.append(user)
        except SDKException as exc:
            failed.append((user, str(exc.cause)))

    # What the id bug leaves: ids come from max(id) + 1 compared as strings, so
    # once id 10 exists every new id is 10 again, and every new user's save fails.
    ids = sorted(str(r[0]) for r in dbstore_rows(bare_db))
    assert ids == sorted(str(n) for n in range(1, 11))
    assert saved == users[:6]
    assert [user for user, _ in failed] == users[6:]
    assert all("Duplicate entry '10' for key 'PRIMARY'" in cause for _, cause in failed)
    ada_rows = [r for r in dbstore_rows(bare_db) if r[1] == "ada@example.com"]
    assert sorted(r[0] for r in ada_rows) == ["1", "2"]

    with caplog.at_level(logging.WARNING, logger=ADOPTION_LOGGER):
        result = bare_db.invoke("upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"adopted the DBStore table '{bare_db.table}': 10 rows read, 9 kept; duplicate rows "
        "of 1 user(s) merged, 1 unreadable expiry time(s) set to NULL",
        f"{bare_db.table}: at revision {migrate.head()}",
    ]
    merged_line = (
        "merged duplicate rows: user 'ada@example.com': 2 rows; kept id '1' (latest expiry), "
        "merged id '2' into it"
    )
    bob_line = (
        "expiry_time of id '4' (user 'bob@example.com') is not epoch milliseconds: "
        "'soon' set to NULL"
    )
    assert result.stderr.splitlines() == [f"warning: {merged_line}", f"warning: {bob_line}"]
    warnings = [r.getMessage() for r in caplog.records if r.name == ADOPTION_LOGGER]
    assert f"{bare_db.table}: {merged_line}" in warnings
    assert f"{bare_db.table}: {bob_line}" in warnings

    assert_same_schema_as_fresh(bare_db)
    assert_nothing_left_beside(bare_db)
    tokens = tokens_by_user(bare_db)
    assert tokens["ada@example.com"] == as_dict(
        _with_id(full_token("ada@example.com", 2, expires=str(expiry + HOUR)), "1")
    )
    assert tokens["bob@example.com"]["expires_in"] is None
    assert tokens["bob@example.com"]["refresh_token"] == bob.get_refresh_token()
    for n, user in enumerate(saved, start=3):
        assert tokens[user]["access_token"] == full_token(user, n).get_access_token()
    assert tokens["3"]["refresh_token"] == "1000.refresh.nobody.0123456789abcdef"
    assert len(tokens) == 9

    # The users DBStore could not save now can be.
    store = bare_db.store()
    try:
        for n, user in enumerate(users[6:], start=9):
            store.save_token(full_token(user, n, expires=str(expiry)))
        assert len(store.get_tokens()) == 12
        assert store.find_token(make_token(user="ada@example.com")).get_id() == "1"
    finally:
        store.close()


def _with_id(token: Any, id: str) -> Any:
    token.set_id(id)
    return token


# Plain INSERTs of the same states, on every backend ----------------------------------------------


def dbstore_state(expiry: int) -> list[dict[str, Any]]:
    """Rows as DBStore's bugs and older apps leave them."""

    def row(id: str, user: str | None, **values: Any) -> dict[str, Any]:
        base = {
            "id": id,
            "user_name": user,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": f"1000.r.{user}.{id}",
            "access_token": f"1000.a.{user}.{id}",
            "grant_token": None,
            "expiry_time": str(expiry),
            "redirect_url": URL,
            "api_domain": DOMAIN,
        }
        base.update(values)
        return base

    return [
        row("1", "ada@example.com"),
        row("2", "bob@example.com", expiry_time="soon"),
        # ada again, later, without a refresh token or an API domain.
        row(
            "3",
            "ada@example.com",
            expiry_time=str(expiry + HOUR),
            refresh_token=None,
            api_domain=None,
        ),
        # Empty strings, as a hand-written INSERT leaves them.
        row("4", "", grant_token="", expiry_time="", redirect_url="", api_domain=""),
        row("5", None, access_token=None, expiry_time=None),
        # Two identical rows of carol: the first (by id) is kept.
        row("6", "carol@example.com", refresh_token="1000.r.carol"),
        row("7", "carol@example.com", refresh_token="1000.r.carol"),
        row("8", "erin@example.com", expiry_time="0001893456000000"),
        row("9", "fred@example.com"),
        row("10", "gwen@example.com"),
        row("", "dave@example.com"),
    ]


def test_a_dbstore_table_is_adopted_on_every_backend(
    bare_db: CliDb, caplog: pytest.LogCaptureFixture
) -> None:
    create(bare_db)
    expiry = now_ms() + HOUR
    engine = bare_db.engine()
    try:
        insert_rows(engine, bare_db.table, dbstore_state(expiry))
    finally:
        engine.dispose()

    with caplog.at_level(logging.WARNING, logger=ADOPTION_LOGGER):
        report = upgrade(bare_db)

    assert report is not None
    assert (report.rows_read, report.rows_kept, report.added_api_domain) == (11, 9, False)
    assert [(m.user_name, m.kept.where, [d.where for d in m.dropped]) for m in report.merges] == [
        ("ada@example.com", "id '3'", ["id '1'"]),
        ("carol@example.com", "id '6'", ["id '7'"]),
    ]
    assert [r.where for r in report.bad_expiries] == ["id '2'"]
    assert [r.where for r, _ in report.new_ids] == ["id ''"]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == [f"{bare_db.table}: {line}" for line in report.warnings()]
    assert len(logged) == 4

    assert_same_schema_as_fresh(bare_db)
    assert_nothing_left_beside(bare_db)
    tokens = tokens_by_user(bare_db)
    ada = tokens["ada@example.com"]
    assert (ada["id"], ada["access_token"], ada["expires_in"]) == (
        "3",
        "1000.a.ada@example.com.3",
        str(expiry + HOUR),
    )
    # Filled from the merged row: the refresh token and the API domain.
    assert (ada["refresh_token"], ada["api_domain"]) == ("1000.r.ada@example.com.1", DOMAIN)
    assert tokens["bob@example.com"]["expires_in"] is None
    assert tokens["4"] == {
        "id": "4",
        "user_name": None,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": "1000.r..4",
        "access_token": "1000.a..4",
        "grant_token": None,
        "expires_in": None,
        "redirect_url": None,
        "api_domain": None,
    }
    assert tokens["5"]["access_token"] is None and tokens["5"]["user_name"] is None
    assert tokens["carol@example.com"]["id"] == "6"
    assert tokens["erin@example.com"]["expires_in"] == "1893456000000"
    assert tokens["gwen@example.com"]["id"] == "10"
    dave = tokens["dave@example.com"]
    assert dave["id"] == report.new_ids[0][1] and len(str(dave["id"])) == 36

    # Every token is found the ways the SDK looks: by user, by id, by token.
    store = bare_db.store()
    try:
        for name, token in tokens.items():
            assert as_dict(store.find_token_by_id(str(token["id"]))) == token
            if token["user_name"]:
                assert store.find_token(make_token(user=name)).get_id() == token["id"]
        found = store.find_token(
            make_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh="1000.r..4")
        )
        assert found.get_id() == "4"
    finally:
        store.close()

    # Upgrading again changes nothing.
    assert upgrade(bare_db) is None
    assert tokens_by_user(bare_db) == tokens


def test_an_older_table_without_api_domain(bare_db: CliDb) -> None:
    create(bare_db, OLD_DBSTORE_DDL)
    expiry = now_ms() + HOUR
    rows = [{k: v for k, v in r.items() if k != "api_domain"} for r in dbstore_state(expiry)[:2]]
    engine = bare_db.engine()
    try:
        insert_rows(engine, bare_db.table, rows)
    finally:
        engine.dispose()
    report = upgrade(bare_db)
    assert report is not None and report.added_api_domain
    assert report.warnings()[-1] == (
        "the table had no api_domain column (an older SDK): added, empty"
    )
    assert_same_schema_as_fresh(bare_db)
    tokens = tokens_by_user(bare_db)
    assert tokens["ada@example.com"]["api_domain"] is None
    assert tokens["ada@example.com"]["refresh_token"] == "1000.r.ada@example.com.1"


def test_an_empty_dbstore_table(bare_db: CliDb) -> None:
    create(bare_db)
    report = upgrade(bare_db)
    assert report is not None and (report.rows_read, report.rows_kept) == (0, 0)
    assert_same_schema_as_fresh(bare_db)


# What adoption refuses, and failures that change nothing ------------------------------------------


def test_a_table_of_another_shape_is_refused_and_left_alone(bare_db: CliDb) -> None:
    create(
        bare_db,
        "CREATE TABLE {table} "
        "(id varchar(10) PRIMARY KEY, user_name varchar(255), note varchar(20))",
    )
    engine = bare_db.engine()
    try:
        insert_rows(engine, bare_db.table, [{"id": "1", "user_name": "ada", "note": "mine"}])
    finally:
        engine.dispose()
    result = bare_db.invoke("upgrade")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"zoho-token-store: the table '{bare_db.table}' exists but is not a table of the SDK's "
        "DBStore (missing access_token, client_id, client_secret, expiry_time, grant_token, "
        "redirect_url, refresh_token; unexpected note)"
    )
    assert result.stderr.count("\n") == 1
    assert dbstore_rows(bare_db) == [("1", "ada", "mine")]
    assert migrate.current(bare_db.url, table_name=bare_db.table) is None


def test_a_failure_while_copying_leaves_the_dbstore_table_as_it_was(
    bare_db: CliDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(bare_db)
    engine = bare_db.engine()
    try:
        insert_rows(engine, bare_db.table, dbstore_state(now_ms())[:4])
    finally:
        engine.dispose()
    before = dbstore_rows(bare_db)
    real_insert = adopt._insert

    def insert_then_fail(conn: Any, table: str, rows: list[dict[str, Any]]) -> None:
        real_insert(conn, table, rows)
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(adopt, "_insert", insert_then_fail)
    with pytest.raises(RuntimeError, match="the disk is full"):
        upgrade(bare_db)
    assert dbstore_rows(bare_db) == before
    assert_nothing_left_beside(bare_db)
    assert migrate.current(bare_db.url, table_name=bare_db.table) is None

    monkeypatch.undo()
    report = upgrade(bare_db)
    assert report is not None and report.rows_kept == 3


def test_a_table_left_by_an_interrupted_adoption_is_refused(bare_db: CliDb) -> None:
    create(bare_db)
    engine = bare_db.engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE TABLE {bare_db.table}_adopting (id varchar(10))"))
    finally:
        engine.dispose()
    result = bare_db.invoke("upgrade")
    assert result.exit_code == 1
    assert f"a table '{bare_db.table}_adopting' exists" in result.stderr
    assert migrate.current(bare_db.url, table_name=bare_db.table) is None


def test_in_a_callers_transaction_postgresql_rolls_the_whole_adoption_back(
    bare_postgresql: CliDb,
) -> None:
    bare_db = bare_postgresql  # transactional DDL
    create(bare_db)
    engine = bare_db.engine()
    try:
        insert_rows(engine, bare_db.table, dbstore_state(now_ms())[:3])
        before = dbstore_rows(bare_db)
        plain = engine.execution_options(isolation_level="READ COMMITTED")
        with plain.connect() as conn:
            conn.begin()  # the caller's own transaction, which Alembic leaves to it
            config = migrate.alembic_config(engine, table_name=bare_db.table)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            assert set(c["name"] for c in inspect(conn).get_columns(bare_db.table)) > set(
                DBSTORE_COLUMNS
            )
            conn.rollback()
        assert dbstore_rows(bare_db) == before
        assert migrate.current(engine, table_name=bare_db.table) is None
    finally:
        engine.dispose()


def test_after_adoption_downgrade_base_then_upgrade_gives_a_fresh_table(bare_db: CliDb) -> None:
    create(bare_db)
    engine = bare_db.engine()
    try:
        insert_rows(engine, bare_db.table, dbstore_state(now_ms())[:2])
    finally:
        engine.dispose()
    upgrade(bare_db)
    assert bare_db.invoke("downgrade", "base").exit_code == 0
    assert bare_db.table not in inspect_tables(bare_db)
    assert upgrade(bare_db) is None
    assert tokens_by_user(bare_db) == {}
    assert_same_schema_as_fresh(bare_db)
