"""``encrypt``, ``rotate-key`` and ``decrypt`` through the command line, on every backend."""

# The shared fixtures are imported by name, and pytest passes them as arguments.
# ruff: noqa: F811

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import select

from test_cli_support import CliDb, _cli_backend, cli_db, invoke  # noqa: F401
from tokens import full_token
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.crypto import Keyring

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def run(db: CliDb, keys: str | None, *args: str):
    return invoke(db.url, db.table, *args, env={"ZOHO_TOKEN_STORE_KEYS": keys})


def key_ids(db: CliDb) -> list[str | None]:
    store = db.store()
    try:
        with store.engine.connect() as conn:
            return sorted(
                conn.execute(select(store.table.c.key_id)).scalars(), key=lambda k: k or ""
            )
    finally:
        store.close()


def fill(db: CliDb, count: int = 5) -> list:
    store = db.store()
    tokens = [full_token(f"user{n}@example.com") for n in range(count)]
    try:
        for token in tokens:
            store.save_token(token)
    finally:
        store.close()
    return tokens


def test_encrypt_rotate_and_decrypt_a_table_from_the_command_line(cli_db: CliDb):
    tokens = fill(cli_db)
    a, b = Keyring([KEY_A]).key_id, Keyring([KEY_B]).key_id

    encrypted = run(cli_db, KEY_A, "encrypt", "--batch-size", "2")
    assert (encrypted.exit_code, encrypted.stdout) == (
        0,
        f"{cli_db.table}: 5 row(s) sealed (key {a}) in 3 batch(es); 0 deferred\n",
    )
    assert key_ids(cli_db) == [a] * 5

    again = run(cli_db, KEY_A, "encrypt")
    assert again.stdout == f"{cli_db.table}: 0 row(s) sealed (key {a}) in 0 batch(es); 0 deferred\n"

    rotated = run(cli_db, f"{KEY_B},{KEY_A}", "rotate-key")
    assert rotated.stdout == (
        f"{cli_db.table}: 5 row(s) re-sealed (key {b}) in 1 batch(es); 0 deferred\n"
    )
    reader = SQLAlchemyTokenStore(cli_db.url, table_name=cli_db.table, encryption_keys=[KEY_B])
    try:
        assert sorted(t.get_refresh_token() for t in reader.get_tokens()) == sorted(
            t.get_refresh_token() for t in tokens
        )
    finally:
        reader.close()

    decrypted = run(cli_db, KEY_B, "decrypt")
    assert decrypted.stdout == (
        f"{cli_db.table}: 5 row(s) decrypted (plaintext) in 1 batch(es); 0 deferred\n"
    )
    assert key_ids(cli_db) == [None] * 5
    assert sorted(t.get_access_token() for t in cli_db.store().get_tokens()) == sorted(
        t.get_access_token() for t in tokens
    )


def test_encrypt_without_keys_is_one_clear_line_and_changes_nothing(cli_db: CliDb):
    fill(cli_db, 2)

    result = run(cli_db, None, "encrypt")

    assert result.exit_code == 1
    assert result.stderr == (
        "zoho-token-store: set ZOHO_TOKEN_STORE_KEYS to the encryption keys "
        "(comma-separated), the new key first\n"
    )
    assert key_ids(cli_db) == [None, None]


def test_rotating_without_the_old_key_names_the_key_it_lacks(cli_db: CliDb):
    fill(cli_db, 1)
    assert run(cli_db, KEY_A, "encrypt").exit_code == 0

    result = run(cli_db, KEY_B, "rotate-key")

    a, b = Keyring([KEY_A]).key_id, Keyring([KEY_B]).key_id
    assert result.exit_code == 1
    assert result.stderr == (
        f"zoho-token-store: a value is encrypted with key {a}, which is not among the "
        f"configured keys ({b})\n"
    )
    assert KEY_A not in result.output and KEY_B not in result.output
    assert key_ids(cli_db) == [a]
