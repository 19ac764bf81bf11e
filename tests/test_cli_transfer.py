"""``import`` and ``export`` on SQLite, PostgreSQL and MariaDB, against the SDK's own stores.

The FileStore files are written, and the exported ones read back, by the
SDK's ``FileStore`` class; on MariaDB the DBStore table to import from is
filled by the SDK's ``DBStore`` class.
"""

# The shared fixtures are imported by name, and pytest passes them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore

from test_cli_support import (  # noqa: F401
    DBSTORE_DDL,
    CliDb,
    _cli_backend,
    cli_db,
    dbstore_for,
    drop_tables,
    insert_rows,
    now_ms,
)
from tokens import CLIENT_ID, CLIENT_SECRET, as_dict, full_token, make_token
from zoho_token_store.sources import FILESTORE_HEADER

HOUR = 3_600_000
HEADER_10 = ",".join(FILESTORE_HEADER)
HEADER_9 = ",".join(FILESTORE_HEADER[:9])


def stored(db: CliDb) -> dict[str, dict[str, str | None]]:
    """Every stored token by user name (or id), as a dict of its fields, id left out."""
    store = db.store()
    try:
        tokens = [as_dict(t) for t in store.get_tokens()]
    finally:
        store.close()
    result = {}
    for token in tokens:
        assert token is not None
        key = token["user_name"] or token["id"]
        result[str(key)] = {k: v for k, v in token.items() if k != "id"}
    return result


def sdk_filestore(path: Path, users: list[str], *, expires: str) -> None:
    """A FileStore file written by the SDK's FileStore, one token per user."""
    store = FileStore(str(path))
    for n, user in enumerate(users, start=1):
        store.save_token(full_token(user, n, expires=expires))


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(user: str, n: int, expiry: int | str, *, columns: int = 10) -> str:
    token = full_token(user, n)
    cells = [
        str(n),
        user,
        CLIENT_ID,
        CLIENT_SECRET,
        token.get_refresh_token(),
        token.get_access_token(),
        "",
        str(expiry),
        token.get_redirect_url(),
        token.get_api_domain(),
    ]
    return ",".join(cells[:columns])


# import from a FileStore file -------------------------------------------------------------------


def test_import_a_file_the_sdks_filestore_wrote(cli_db: CliDb, tmp_path: Path) -> None:
    path = tmp_path / "sdk_tokens.csv"
    users = ["ada@example.com", "bob@example.com", "carol@example.com"]
    expiry = str(now_ms() + HOUR)
    sdk_filestore(path, users, expires=expiry)
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        f"Imported {path} into '{cli_db.table}': 3 new, 0 updated, 0 unchanged, "
        "0 skipped, 0 duplicate(s) merged."
    )
    tokens = stored(cli_db)
    for n, user in enumerate(users, start=1):
        expected = as_dict(full_token(user, n, expires=expiry))
        assert expected is not None
        assert tokens[user] == {k: v for k, v in expected.items() if k != "id"}
    assert CLIENT_SECRET not in result.output


def test_import_a_nine_column_file_from_an_older_sdk(cli_db: CliDb, tmp_path: Path) -> None:
    expiry = now_ms() + HOUR
    path = write(tmp_path / "old.csv", HEADER_9, row("ada@example.com", 1, expiry, columns=9))
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0, result.output
    ada = stored(cli_db)["ada@example.com"]
    assert ada["api_domain"] is None
    assert ada["refresh_token"] == full_token("ada@example.com", 1).get_refresh_token()
    assert ada["expires_in"] == str(expiry)


def test_a_malformed_line_is_reported_by_number_and_nothing_else_is_lost(
    cli_db: CliDb, tmp_path: Path
) -> None:
    expiry = now_ms() + HOUR
    path = write(
        tmp_path / "broken.csv",
        HEADER_10,
        row("ada@example.com", 1, expiry),
        '2,"bob@example.com,unterminated quote',
        row("carol@example.com", 3, expiry),
        "4,dave@example.com,too,few",
        "",
        row("erin@example.com", 5, expiry),
        "6,frank@example.com,,,,,,,,",
    )
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].endswith("3 new, 0 updated, 0 unchanged, 3 skipped, 0 duplicate(s) merged.")
    assert "  skipped line 3: malformed CSV: unexpected end of data" in lines
    assert "  skipped line 5: malformed: 4 fields, expected 10 (or 9 in older files)" in lines
    assert "  skipped line 8: no access, refresh or grant token to import" in lines
    assert result.stderr == (
        "zoho-token-store: import: 3 row(s) could not be imported; fix them and run the same "
        "import again (rows already stored are left as they are)\n"
    )
    assert set(stored(cli_db)) == {"ada@example.com", "carol@example.com", "erin@example.com"}


def test_importing_twice_changes_nothing_the_second_time(cli_db: CliDb, tmp_path: Path) -> None:
    path = tmp_path / "sdk_tokens.csv"
    sdk_filestore(path, ["ada@example.com", "bob@example.com"], expires=str(now_ms() + HOUR))
    assert cli_db.invoke("import", str(path)).exit_code == 0
    engine = cli_db.engine()
    try:
        with engine.connect() as conn:
            before = conn.execute(text(f"SELECT * FROM {cli_db.table} ORDER BY id")).all()  # noqa: S608
        again = cli_db.invoke("import", str(path))
        with engine.connect() as conn:
            after = conn.execute(text(f"SELECT * FROM {cli_db.table} ORDER BY id")).all()  # noqa: S608
    finally:
        engine.dispose()
    assert again.exit_code == 0
    assert "0 new, 0 updated, 2 unchanged, 0 skipped" in again.stdout
    assert after == before


def test_a_users_duplicate_rows_are_merged_keeping_the_latest(
    cli_db: CliDb, tmp_path: Path
) -> None:
    later, earlier = now_ms() + 2 * HOUR, now_ms() + HOUR
    path = write(
        tmp_path / "dups.csv",
        HEADER_10,
        row("ada@example.com", 1, earlier),
        row("bob@example.com", 2, earlier),
        row("ada@example.com", 3, later),
    )
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0
    assert "2 new, 0 updated, 0 unchanged, 0 skipped, 1 duplicate(s) merged." in result.stdout
    assert (
        "  merged user 'ada@example.com': 2 rows; kept line 4 (latest expiry), "
        "merged line 2 into it"
    ) in result.stdout.splitlines()
    ada = stored(cli_db)["ada@example.com"]
    assert ada["access_token"] == full_token("ada@example.com", 3).get_access_token()
    assert ada["expires_in"] == str(later)


def test_an_older_row_never_overwrites_a_newer_stored_token(cli_db: CliDb, tmp_path: Path) -> None:
    store = cli_db.store()
    newer = now_ms() + 2 * HOUR
    try:
        store.save_token(full_token("ada@example.com", 9, expires=str(newer)))
        store.save_token(full_token("bob@example.com", 9, expires=str(now_ms() - HOUR)))
    finally:
        store.close()
    path = write(
        tmp_path / "old.csv",
        HEADER_10,
        row("ada@example.com", 1, now_ms() + HOUR),
        row("bob@example.com", 2, now_ms() + HOUR),
    )
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0
    assert "0 new, 1 updated, 0 unchanged, 1 skipped" in result.stdout
    assert (
        "  skipped line 2: the stored token is newer (it expires later): left as it is"
        in result.stdout.splitlines()
    )
    tokens = stored(cli_db)
    assert tokens["ada@example.com"]["expires_in"] == str(newer)
    assert tokens["bob@example.com"]["access_token"] == (
        full_token("bob@example.com", 2).get_access_token()
    )


def test_an_id_taken_by_another_token_gets_a_new_one(cli_db: CliDb, tmp_path: Path) -> None:
    store = cli_db.store()
    try:
        store.save_token(make_token(user="zoe@example.com", refresh="1000.r.zoe", id="1"))
    finally:
        store.close()
    path = write(tmp_path / "ids.csv", HEADER_10, row("ada@example.com", 1, now_ms() + HOUR))
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0
    assert (
        "  note line 2: its id belongs to another stored token: saved with a new id"
        in result.stdout.splitlines()
    )
    assert set(stored(cli_db)) == {"ada@example.com", "zoe@example.com"}


def test_an_unreadable_expiry_imports_the_token_without_one(cli_db: CliDb, tmp_path: Path) -> None:
    path = write(tmp_path / "soon.csv", HEADER_10, row("ada@example.com", 1, "soon"))
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0
    assert (
        "  note line 2: expiry_time is not epoch milliseconds: imported without an expiry"
        in result.stdout.splitlines()
    )
    assert stored(cli_db)["ada@example.com"]["expires_in"] is None


def test_a_token_shifted_into_another_field_is_never_echoed(cli_db: CliDb, tmp_path: Path) -> None:
    # Two empty fields too many before the access token push it into expiry_time.
    access = "1000.ACCESSSECRETINEXPIRY0123456789abcdef0123456789"
    refresh = full_token("ada@example.com").get_refresh_token()
    cells = ["1", "ada@example.com", CLIENT_ID, CLIENT_SECRET, refresh, "", "", access, "", ""]
    path = write(tmp_path / "shifted.csv", HEADER_10, ",".join(cells))
    result = cli_db.invoke("import", str(path))
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[1:] == [
        "  note line 2: expiry_time is not epoch milliseconds: imported without an expiry"
    ]
    for secret in (access, refresh, CLIENT_SECRET):
        for start in range(len(secret) - 7):
            assert secret[start : start + 8] not in result.output
    assert stored(cli_db)["ada@example.com"]["expires_in"] is None


def test_a_large_import(cli_db: CliDb, tmp_path: Path) -> None:
    expiry = now_ms() + HOUR
    users = [f"user{n:04d}@example.com" for n in range(250)]
    path = write(
        tmp_path / "large.csv", HEADER_10, *(row(u, n, expiry) for n, u in enumerate(users))
    )
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0
    assert "250 new, 0 updated, 0 unchanged, 0 skipped" in result.stdout
    assert len(stored(cli_db)) == 250


def test_importing_a_missing_file_fails(cli_db: CliDb, tmp_path: Path) -> None:
    result = cli_db.invoke("import", str(tmp_path / "absent.csv"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"zoho-token-store: cannot read '{tmp_path / 'absent.csv'}': No such file or directory\n"
    )


# import from a DBStore table --------------------------------------------------------------------


def test_import_from_a_dbstore_table(cli_db: CliDb) -> None:
    source = f"src_{os.getpid()}"
    drop_tables(cli_db.url, [source])
    engine = cli_db.engine()
    expiry = now_ms() + HOUR
    try:
        with engine.connect() as conn:
            conn.execute(text(DBSTORE_DDL.format(table=source)))
        if cli_db.name == "mariadb":
            dbstore = dbstore_for(cli_db.url, source)
            for n, user in enumerate(["ada@example.com", "bob@example.com"], start=1):
                dbstore.save_token(full_token(user, n, expires=str(expiry)))
            # Saving an unchanged token without its id makes DBStore insert it again.
            dbstore.save_token(full_token("ada@example.com", 1, expires=str(expiry)))
        else:
            insert_rows(
                engine,
                source,
                [
                    dict(zip(FILESTORE_HEADER[:8], row(u, n, expiry).split(",")[:8]))
                    | {"redirect_url": "https://app.example.com/oauth/callback"}
                    for n, u in (
                        (1, "ada@example.com"),
                        (2, "bob@example.com"),
                        (3, "ada@example.com"),
                    )
                ],
            )
        result = cli_db.invoke("import", "--from-dbstore", cli_db.url, "--from-table", source)
        assert result.exit_code == 0, result.output
        assert "2 new, 0 updated, 0 unchanged, 0 skipped, 1 duplicate(s) merged." in result.stdout
        assert set(stored(cli_db)) == {"ada@example.com", "bob@example.com"}
        again = cli_db.invoke("import", "--from-dbstore", cli_db.url, "--from-table", source)
        assert "0 new, 0 updated, 2 unchanged" in again.stdout
        missing = cli_db.invoke("import", "--from-dbstore", cli_db.url, "--from-table", "no_such")
        assert missing.exit_code == 1
        assert "import: no table 'no_such' in " in missing.stderr
    finally:
        engine.dispose()
        drop_tables(cli_db.url, [source])


# export -----------------------------------------------------------------------------------------


def fill(db: CliDb) -> None:
    store = db.store()
    try:
        store.save_token(full_token("ada@example.com", expires=str(now_ms() + HOUR)))
        store.save_token(full_token("bob@example.com", expires=str(now_ms() - HOUR)))
        store.save_token(make_token(grant="1000.grant.only.0123456789abcdef0123", id="g-1"))
    finally:
        store.close()


def test_export_leaves_secrets_out_by_default_and_is_private(cli_db: CliDb, tmp_path: Path) -> None:
    fill(cli_db)
    path = tmp_path / "inventory.csv"
    result = cli_db.invoke("export", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Exported 3 token(s) to '{path}' (mode 0600), secrets left out "
        "(zoho-token-store export --include-secrets writes them).\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == FILESTORE_HEADER
    for exported in rows:
        for secret in ("client_secret", "refresh_token", "access_token", "grant_token"):
            assert exported[secret] == ""
    content = path.read_text()
    assert CLIENT_SECRET not in content and "1000.refresh." not in content
    assert {r["user_name"] for r in rows} == {"ada@example.com", "bob@example.com", ""}


def test_export_with_secrets_is_read_back_by_the_sdks_filestore(
    cli_db: CliDb, tmp_path: Path
) -> None:
    fill(cli_db)
    path = tmp_path / "tokens.csv"
    result = cli_db.invoke("export", "--include-secrets", str(path))
    assert result.exit_code == 0, result.output
    assert CLIENT_SECRET not in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    store = cli_db.store()
    try:
        ours = sorted((as_dict(t) for t in store.get_tokens()), key=lambda t: str(t and t["id"]))
    finally:
        store.close()
    sdk = FileStore(str(path))
    theirs = sorted((as_dict(t) for t in sdk.get_tokens()), key=lambda t: str(t and t["id"]))
    assert theirs == ours
    found = sdk.find_token(make_token(user="ada@example.com"))
    assert found.get_refresh_token() == full_token("ada@example.com").get_refresh_token()


def test_export_then_import_into_another_table_round_trips(cli_db: CliDb, tmp_path: Path) -> None:
    fill(cli_db)
    path = tmp_path / "tokens.csv"
    assert cli_db.invoke("export", "--include-secrets", str(path)).exit_code == 0
    before = stored(cli_db)
    assert cli_db.invoke("purge", "--all", "--yes").exit_code == 0
    result = cli_db.invoke("import", str(path))
    assert result.exit_code == 0, result.output
    assert "3 new" in result.stdout
    assert stored(cli_db) == before


def test_tokens_as_large_as_the_store_accepts_round_trip_through_export_and_import(
    cli_db: CliDb, tmp_path: Path
) -> None:
    limit = 1024 * 1024  # characters in one secret: the store's own limit
    huge = make_token(
        user="ada@example.com",
        client_id=CLIENT_ID,
        client_secret="s" * limit,
        refresh="1000." + "r" * (limit - 5),
        access="1000." + "a" * (limit - 5),
        grant="1000." + "g" * (limit - 5),
        expires=str(now_ms() + HOUR),
        redirect_url="https://app.example.com/oauth/callback",
    )
    store = cli_db.store()
    try:
        store.save_token(huge)
    finally:
        store.close()
    before = stored(cli_db)
    path = tmp_path / "tokens.csv"
    assert cli_db.invoke("export", "--include-secrets", str(path)).exit_code == 0
    assert cli_db.invoke("purge", "--all", "--yes").exit_code == 0
    limit_before = csv.field_size_limit()

    result = cli_db.invoke("import", str(path))

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"Imported {path} into '{cli_db.table}': 1 new, 0 updated, 0 unchanged, "
        "0 skipped, 0 duplicate(s) merged.\n"
    )
    assert stored(cli_db) == before
    assert csv.field_size_limit() == limit_before  # the process-wide limit is put back


def test_export_refuses_to_replace_a_file_without_force(cli_db: CliDb, tmp_path: Path) -> None:
    fill(cli_db)
    path = tmp_path / "tokens.csv"
    path.write_text("keep me\n")
    path.chmod(0o644)
    refused = cli_db.invoke("export", str(path))
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"zoho-token-store: export: '{path}' exists; pass --force to replace it\n"
    )
    assert path.read_text() == "keep me\n"
    forced = cli_db.invoke("export", "--force", str(path))
    assert forced.exit_code == 0
    assert path.read_text().startswith(",".join(FILESTORE_HEADER))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.csv"]


@pytest.mark.parametrize("args", [["export"], ["import", "x.csv", "--from-dbstore", "sqlite://"]])
def test_transfer_usage_errors(cli_db: CliDb, args: list[str]) -> None:
    assert cli_db.invoke(*args).exit_code == 2
