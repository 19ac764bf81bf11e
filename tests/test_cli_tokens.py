"""``list``, ``show``, ``delete`` and ``purge`` on SQLite, PostgreSQL and MariaDB."""

# The shared fixtures are imported by name, and pytest passes them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import json

import pytest

from test_cli_support import CliDb, _cli_backend, cli_db, invoke, now_ms  # noqa: F401
from tokens import CLIENT_SECRET, full_token, make_token
from zoho_token_store.masking import mask

HOUR = 3_600_000


def fill(db: CliDb) -> dict[str, str]:
    """Three tokens: ada's expires in 2.5 h, bob's expired 3.5 h ago, carol's 40 days ago.

    Returns each user's id.
    """
    store = db.store()
    ids = {}
    try:
        for user, expiry in (
            ("ada@example.com", now_ms() + 2 * HOUR + HOUR // 2),
            ("bob@example.com", now_ms() - 3 * HOUR - HOUR // 2),
            ("carol@example.com", now_ms() - 40 * 24 * HOUR),
        ):
            token = full_token(user, expires=str(expiry))
            store.save_token(token)
            ids[user] = token.get_id()
        grant_only = make_token(grant="1000.grant.only.0123456789abcdef0123", id="grant-1")
        store.save_token(grant_only)
        ids["grant"] = "grant-1"
    finally:
        store.close()
    return ids


def secrets_of(user: str) -> list[str]:
    token = full_token(user)
    return [CLIENT_SECRET, token.get_refresh_token(), token.get_access_token()]


def assert_no_secret(text: str) -> None:
    for user in ("ada@example.com", "bob@example.com", "carol@example.com"):
        for secret in secrets_of(user):
            assert secret not in text
    assert "1000.grant.only.0123456789abcdef0123" not in text


def remaining(db: CliDb) -> set[str]:
    store = db.store()
    try:
        return {t.get_id() for t in store.get_tokens()}
    finally:
        store.close()


# list ----------------------------------------------------------------------------------------


def test_list_of_an_empty_table(cli_db: CliDb) -> None:
    result = cli_db.invoke("list")
    assert (result.exit_code, result.stdout) == (0, f"No tokens in table '{cli_db.table}'.\n")
    assert cli_db.invoke("list", "--json").stdout == "[]\n"


def test_list_shows_one_row_per_token_with_relative_expiry_and_masked_secrets(
    cli_db: CliDb,
) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:3] == ["id", "user", "client"]
    assert {"domain", "expires", "expiry", "updated", "refresh", "token"} <= set(header)
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == set(ids.values())
    ada = rows[ids["ada@example.com"]]
    assert "ada@example.com" in ada and "https://www.zohoapis.com" in ada
    assert "in 2 h" in ada
    assert "expired 3 h ago" in rows[ids["bob@example.com"]]
    assert "expired 40 d ago" in rows[ids["carol@example.com"]]
    assert mask(full_token("ada@example.com").get_refresh_token()) in ada
    assert_no_secret(result.output)


def test_list_json(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("list", "--json")
    assert result.exit_code == 0
    tokens = {t["id"]: t for t in json.loads(result.stdout)}
    assert set(tokens) == set(ids.values())
    ada = tokens[ids["ada@example.com"]]
    assert ada["user_name"] == "ada@example.com"
    assert ada["client_id"] == full_token("ada@example.com").get_client_id()
    assert ada["expiry"] == "in 2 h"
    assert isinstance(ada["expiry_time"], int)
    assert ada["refresh_token"] == mask(full_token("ada@example.com").get_refresh_token())
    assert ada["updated_at"] and ada["expires_at"]
    assert tokens["grant-1"]["refresh_token"] is None
    assert tokens["grant-1"]["expiry"] == "no expiry"
    assert_no_secret(result.output)


# show ----------------------------------------------------------------------------------------


def test_show_prints_every_field_with_secrets_masked(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    token = full_token("ada@example.com")
    result = cli_db.invoke("show", ids["ada@example.com"])
    assert result.exit_code == 0, result.output
    fields = {}
    for line in result.stdout.splitlines():
        name, _, value = line.strip().partition("  ")
        fields[name] = value.strip()
    assert fields["id"] == ids["ada@example.com"]
    assert fields["user"] == "ada@example.com"
    assert fields["client secret"] == mask(CLIENT_SECRET)
    assert fields["refresh token"] == mask(token.get_refresh_token())
    assert fields["access token"] == mask(token.get_access_token())
    assert fields["grant token"] == "-"
    assert fields["expiry"].endswith("(in 2 h)")
    assert fields["redirect url"] == token.get_redirect_url()
    assert fields["api domain"] == token.get_api_domain()
    assert fields["issued at"] != "-"
    assert fields["refresh lease until"] == "-"
    assert_no_secret(result.output)


def test_show_json(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("show", "grant-1", "--json")
    shown = json.loads(result.stdout)
    assert shown["id"] == "grant-1"
    assert shown["grant_token"] == mask("1000.grant.only.0123456789abcdef0123")
    assert shown["client_secret"] is None
    assert set(shown) >= {"created_at", "updated_at", "issued_at", "refresh_lease_until"}
    result = cli_db.invoke("show", ids["bob@example.com"], "--json")
    assert json.loads(result.stdout)["expiry"] == "expired 3 h ago"
    assert_no_secret(result.output)


def test_show_of_an_unknown_id_fails(cli_db: CliDb) -> None:
    result = cli_db.invoke("show", "no-such-id")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"zoho-token-store: show: no token with id 'no-such-id' in table '{cli_db.table}'\n"
    )


# delete --------------------------------------------------------------------------------------


def test_delete_by_id(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("delete", ids["bob@example.com"])
    assert (result.exit_code, result.stdout) == (0, f"Deleted token '{ids['bob@example.com']}'.\n")
    assert remaining(cli_db) == set(ids.values()) - {ids["bob@example.com"]}


def test_delete_by_user(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("delete", "--user", "carol@example.com")
    assert result.exit_code == 0
    assert result.stdout == (
        f"Deleted 1 token(s) of user 'carol@example.com' (id '{ids['carol@example.com']}').\n"
    )
    assert remaining(cli_db) == set(ids.values()) - {ids["carol@example.com"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-id"], "delete: no token with id 'no-such-id' in table"),
        (["--user", "nobody@example.com"], "delete: no token of user 'nobody@example.com'"),
    ],
)
def test_delete_of_an_unknown_token_fails_and_deletes_nothing(
    cli_db: CliDb, args: list[str], message: str
) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("delete", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert remaining(cli_db) == set(ids.values())


# purge ---------------------------------------------------------------------------------------


def test_purge_expired_before_a_dry_run_deletes_nothing(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("purge", "--expired-before", "2h", "--dry-run")
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert first.startswith("Would delete 2 token(s) expired before ")
    assert first.endswith("(2h ago):")
    assert ids["bob@example.com"] in result.stdout and ids["carol@example.com"] in result.stdout
    assert ids["ada@example.com"] not in result.stdout
    assert remaining(cli_db) == set(ids.values())
    assert_no_secret(result.output)


@pytest.mark.parametrize(
    ("age", "gone"),
    [
        ("2h", {"bob@example.com", "carol@example.com"}),
        ("30d", {"carol@example.com"}),
        ("1000d", set()),
    ],
)
def test_purge_expired_before(cli_db: CliDb, age: str, gone: set[str]) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("purge", "--expired-before", age)
    assert result.exit_code == 0, result.output
    if gone:
        assert result.stdout.startswith(f"Deleted {len(gone)} token(s) expired before ")
    else:
        assert result.stdout.startswith("No tokens expired before ")
    # The grant-only token has no expiry, and is never purged by age.
    assert remaining(cli_db) == set(ids.values()) - {ids[user] for user in gone}


@pytest.mark.parametrize(
    "age",
    ["999999999999999d", "36501d", "5215w", pytest.param("1" + "0" * 5000 + "s", id="5001-digits")],
)
def test_purge_refuses_a_duration_over_100_years_as_a_usage_error_and_deletes_nothing(
    cli_db: CliDb, age: str
) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("purge", "--expired-before", age)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '--expired-before': '{age}' is out of range: "
        "the longest is 100 years (36500d)"
    )
    assert remaining(cli_db) == set(ids.values())


def test_purge_accepts_exactly_100_years(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    result = cli_db.invoke("purge", "--expired-before", "36500d")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("No tokens expired before 19")
    assert result.stdout.endswith(" (36500d ago).\n")
    assert remaining(cli_db) == set(ids.values())


def test_purge_help_states_the_longest_duration() -> None:
    result = invoke(None, None, "purge", "--help")
    assert result.exit_code == 0
    assert "2w, up to 100 years (36500d)." in " ".join(result.stdout.split())


def test_purge_all_asks_first(cli_db: CliDb) -> None:
    ids = fill(cli_db)
    declined = cli_db.invoke("purge", "--all", input="n\n")
    assert declined.exit_code == 1
    assert "Delete all 4 token(s) in table" in declined.stderr
    assert "purge: cancelled; nothing was deleted" in declined.stderr
    assert remaining(cli_db) == set(ids.values())

    dry = cli_db.invoke("purge", "--all", "--dry-run")
    assert dry.stdout == f"Would delete all 4 token(s) in table '{cli_db.table}'.\n"
    assert remaining(cli_db) == set(ids.values())

    accepted = cli_db.invoke("purge", "--all", input="y\n")
    assert accepted.exit_code == 0
    # (Typer's runner echoes the typed answer to stdout.)
    assert accepted.stdout.endswith(f"Deleted 4 token(s) from table '{cli_db.table}'.\n")
    assert remaining(cli_db) == set()


def test_purge_all_yes_does_not_ask(cli_db: CliDb) -> None:
    fill(cli_db)
    result = cli_db.invoke("purge", "--all", "--yes")
    assert (result.exit_code, result.stderr) == (0, "")
    assert remaining(cli_db) == set()
    again = cli_db.invoke("purge", "--all", "--yes")
    assert again.stdout == f"No tokens in table '{cli_db.table}'.\n"
