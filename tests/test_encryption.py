"""Encryption at rest on every backend: what the table holds, key errors, rotation.

The contract itself runs encrypted too (test_contract.py's ``store`` fixture).
"""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from conftest import Backend
from tokens import CLIENT_SECRET, full_token, make_token
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.crypto import MIXED, EncryptionError, Keyring, PlainCodec, plain_digest
from zoho_token_store.rekey import pending_rows, reseal

KEY_A = "q1AwVZmJ4tE9vXo2rK8sYb3nC6dF0gH5iJ7kL2mN4pQ="
KEY_B = Fernet.generate_key().decode()
SECRETS = ("client_secret", "refresh_token", "access_token", "grant_token")


def _store(backend: Backend, keys=None, **options) -> SQLAlchemyTokenStore:
    return SQLAlchemyTokenStore(
        backend.url, table_name=backend.table_name, encryption_keys=keys, **options
    )


def _raw_rows(store: SQLAlchemyTokenStore) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(store.table)).mappings()]


@pytest.fixture
def empty(shared_store: SQLAlchemyTokenStore) -> SQLAlchemyTokenStore:
    """A plaintext store on an empty table; the tests open keyed stores beside it."""
    return shared_store


def test_an_encrypted_table_holds_no_plaintext_secret(shared_backend: Backend, empty):
    keyed = _store(shared_backend, [KEY_A])
    token = full_token("ann@example.com")
    token.set_grant_token("1000.grant.ann.0123456789abcdef")
    keyed.save_token(token)

    [row] = _raw_rows(empty)
    key_id = Keyring([KEY_A]).key_id
    assert row["key_id"] == key_id
    for name in SECRETS:
        assert row[name].startswith(f"zts1:{key_id}:")
    plaintexts = {
        token.get_client_secret(),
        token.get_refresh_token(),
        token.get_access_token(),
        token.get_grant_token(),
    }
    assert not any(p in str(value) for p in plaintexts for value in row.values())
    # Digests are keyed: equal values can't be matched against a plain SHA-256.
    assert row["access_token_digest"] != plain_digest(token.get_access_token())
    keyed.close()


def test_a_keyed_store_reads_and_finds_by_token_what_it_sealed(shared_backend: Backend, empty):
    keyed = _store(shared_backend, [KEY_A])
    token = full_token("ann@example.com")
    keyed.save_token(token)

    found = keyed.find_token(make_token(access=token.get_access_token()))

    assert found.get_refresh_token() == token.get_refresh_token()
    assert found.get_client_secret() == CLIENT_SECRET
    keyed.close()


def test_a_store_without_keys_names_the_key_and_refuses_to_mix_in_plaintext(
    shared_backend: Backend, empty
):
    keyed = _store(shared_backend, [KEY_A])
    keyed.save_token(full_token("ann@example.com"))
    before = _raw_rows(empty)
    plain = _store(shared_backend)
    key_id = Keyring([KEY_A]).key_id

    with pytest.raises(EncryptionError) as read_error:
        plain.get_tokens()
    with pytest.raises(EncryptionError) as write_error:
        plain.save_token(full_token("bob@example.com"))

    assert read_error.value.code == "TOKEN_STORE"
    assert f"encrypted with key {key_id}" in read_error.value.error_message
    assert write_error.value.error_message.startswith(
        f"save_token: the table {shared_backend.table_name!r} holds encrypted rows (key {key_id})"
    )
    for error in (read_error.value, write_error.value):
        assert KEY_A not in str(error)
    assert _raw_rows(empty) == before
    keyed.close()
    plain.close()


def test_allow_plaintext_lets_a_keyless_store_write_and_marks_the_row_mixed(
    shared_backend: Backend, empty
):
    keyed = _store(shared_backend, [KEY_A])
    token = full_token("ann@example.com")
    keyed.save_token(token)
    plain = _store(shared_backend, allow_plaintext=True)

    plain.save_token(make_token(user="ann@example.com", access="1000.access.plain", expires="9"))

    [row] = _raw_rows(empty)
    assert row["key_id"] == MIXED
    assert row["access_token"] == "1000.access.plain"
    assert keyed.find_token_by_id(token.get_id()).get_refresh_token() == token.get_refresh_token()
    keyed.close()
    plain.close()


def test_a_wrong_key_gives_an_error_naming_the_key_id_never_the_key(shared_backend: Backend, empty):
    _store(shared_backend, [KEY_A]).save_token(full_token("ann@example.com"))
    wrong = _store(shared_backend, [KEY_B])

    with pytest.raises(EncryptionError) as info:
        wrong.get_tokens()

    key_a, key_b = Keyring([KEY_A]).key_id, Keyring([KEY_B]).key_id
    assert info.value.error_message == (
        f"a value is encrypted with key {key_a}, which is not among the configured keys ({key_b})"
    )
    assert KEY_A not in repr(info.value) and KEY_B not in repr(info.value)
    wrong.close()


def test_encrypt_then_rotate_from_a_to_b_reads_with_b_a_and_then_with_b_alone(
    shared_backend: Backend, empty
):
    plain = _store(shared_backend)
    tokens = [full_token(f"user{n}@example.com") for n in range(7)]
    for token in tokens:
        plain.save_token(token)
    table, engine = empty.table, empty.engine

    encrypted = reseal(engine, table, PlainCodec(), Keyring([KEY_A]), batch_size=3)
    assert (encrypted.resealed, encrypted.batches, encrypted.deferred) == (7, 3, 0)
    rotated = reseal(engine, table, Keyring([KEY_B, KEY_A]), Keyring([KEY_B]), batch_size=3)
    assert (rotated.resealed, rotated.deferred) == (7, 0)

    for keys in ([KEY_B, KEY_A], [KEY_B]):
        reader = _store(shared_backend, keys)
        by_user = {t.get_user_signature().get_name(): t for t in reader.get_tokens()}
        for token in tokens:
            stored = by_user[token.get_user_signature().get_name()]
            assert stored.get_refresh_token() == token.get_refresh_token()
            assert stored.get_access_token() == token.get_access_token()
        found = reader.find_token(make_token(access=tokens[3].get_access_token()))
        assert found.get_user_signature().get_name() == "user3@example.com"
        reader.close()
    with engine.connect() as conn:
        assert pending_rows(conn, table, Keyring([KEY_B]).key_id) == 0
    plain.close()


def test_a_rotation_stopped_between_batches_resumes_with_nothing_lost(
    shared_backend: Backend, empty
):
    keyed = _store(shared_backend, [KEY_A])
    tokens = [full_token(f"user{n}@example.com") for n in range(5)]
    for token in tokens:
        keyed.save_token(token)
    table, engine = empty.table, empty.engine
    calls: list[int] = []

    class Stop(Exception):
        pass

    def stop_after_first_batch(done: int) -> None:
        calls.append(done)
        raise Stop  # the process dies between two batches

    with pytest.raises(Stop):
        reseal(
            engine,
            table,
            Keyring([KEY_B, KEY_A]),
            Keyring([KEY_B]),
            batch_size=2,
            progress=stop_after_first_batch,
        )
    with engine.connect() as conn:
        assert pending_rows(conn, table, Keyring([KEY_B]).key_id) == 3
    # Meanwhile the stores keep working, with either key set.
    both = _store(shared_backend, [KEY_B, KEY_A])
    assert len(both.get_tokens()) == 5

    resumed = reseal(engine, table, Keyring([KEY_B, KEY_A]), Keyring([KEY_B]), batch_size=2)

    assert (calls, resumed.resealed) == ([2], 3)
    only_b = _store(shared_backend, [KEY_B])
    assert sorted(t.get_access_token() for t in only_b.get_tokens()) == sorted(
        t.get_access_token() for t in tokens
    )
    for store in (keyed, both, only_b):
        store.close()


def test_decrypt_returns_the_table_to_plaintext(shared_backend: Backend, empty):
    keyed = _store(shared_backend, [KEY_A])
    token = full_token("ann@example.com")
    keyed.save_token(token)

    report = reseal(empty.engine, empty.table, Keyring([KEY_A]), PlainCodec())

    [row] = _raw_rows(empty)
    assert (report.resealed, row["key_id"], row["refresh_token"]) == (
        1,
        None,
        token.get_refresh_token(),
    )
    assert row["access_token_digest"] == plain_digest(token.get_access_token())
    assert empty.find_token(make_token(access=token.get_access_token())).get_id() == token.get_id()
    keyed.close()


def test_keys_come_from_the_environment(monkeypatch, shared_backend: Backend, empty):
    monkeypatch.setenv("ZOHO_TOKEN_STORE_KEYS", f"{KEY_B}, {KEY_A}")
    from_env = _store(shared_backend)
    from_env.save_token(full_token("ann@example.com"))

    [row] = _raw_rows(empty)
    assert row["key_id"] == Keyring([KEY_B]).key_id
    from_env.close()


@pytest.mark.parametrize(
    "bad",
    ["not-a-key", "", "A" * 44, f"{KEY_A};{KEY_B}", f"{KEY_A} {KEY_B}", f"{KEY_A}x", None, b"k"],
    ids=["word", "empty", "no-padding", "semicolon", "space", "trailing-x", "none", "bytes"],
)
def test_a_malformed_key_is_refused_naming_its_position_not_its_value(bad):
    with pytest.raises(EncryptionError) as info:
        Keyring([KEY_A, bad] if bad != "" else [])
    message = info.value.error_message
    assert message == (
        "encryption key #2 is not a Fernet key (32 url-safe base64-encoded bytes, "
        "as Fernet.generate_key() makes)"
        if bad != ""
        else "encryption_keys is empty: give at least one key"
    )
    assert KEY_A not in message


@pytest.mark.parametrize(("keys", "kind"), [(KEY_A, "str"), (5, "int")])
def test_keys_that_are_not_a_list_are_refused_naming_the_type(keys, kind):
    with pytest.raises(EncryptionError) as info:
        Keyring(keys)
    assert info.value.error_message == f"encryption_keys must be a list of keys, got {kind}"
    assert KEY_A not in info.value.error_message


def test_reprs_show_key_ids_only():
    keyring = Keyring([KEY_A, KEY_B])
    assert repr(keyring) == f"Keyring(key_ids={list(keyring.key_ids)!r})"
    assert KEY_A not in repr(keyring) and KEY_B not in repr(keyring)


@pytest.mark.parametrize("user", ["ann@example.com", "bob@example.com"], ids=["same", "new"])
def test_a_store_without_the_tables_key_refuses_its_first_save_and_writes_nothing(
    shared_backend: Backend, empty, user
):
    # A new user's row sealed with key B would break every [A] store's
    # get_tokens, and a store with [B] alone cannot read the table anyway.
    _store(shared_backend, [KEY_A]).save_token(full_token("ann@example.com"))
    before = _raw_rows(empty)
    wrong = _store(shared_backend, [KEY_B])

    with pytest.raises(EncryptionError) as info:
        wrong.save_token(make_token(user=user, access="1000.access.new", expires="9"))

    key_a, key_b = Keyring([KEY_A]).key_id, Keyring([KEY_B]).key_id
    assert info.value.error_message == (
        f"save_token: the table {empty.table.name!r} holds rows sealed with key {key_a}, "
        f"which is not among this store's keys ({key_b}): add it to the keys, after the "
        "current one; nothing was written"
    )
    assert _raw_rows(empty) == before
    wrong.close()


def test_a_store_with_the_wrong_key_never_writes_into_a_row_sealed_by_another(
    shared_backend: Backend, empty
):
    # The store passed its first-save check on a table sealed with its own
    # key; then a store rotating to key A (keys [A, B]) saved a row with A.
    wrong = _store(shared_backend, [KEY_B])
    wrong.save_token(full_token("bob@example.com"))
    _store(shared_backend, [KEY_A, KEY_B]).save_token(full_token("ann@example.com"))
    before = _raw_rows(empty)

    with pytest.raises(EncryptionError) as info:
        wrong.save_token(make_token(user="ann@example.com", access="1000.access.new", expires="9"))

    key_a, key_b = Keyring([KEY_A]).key_id, Keyring([KEY_B]).key_id
    assert info.value.error_message == (
        f"save_token: the stored row is sealed with key {key_a}, which is not among this "
        f"store's keys ({key_b}); nothing was written"
    )
    assert _raw_rows(empty) == before
    wrong.close()


def test_values_that_look_sealed_or_escaped_survive_encrypt_and_decrypt(
    shared_backend: Backend, empty
):
    # Plaintext that begins with the sealed prefix, or with the escape, is
    # never taken for a sealed value, whichever state the table is in.
    look_alikes = {"access": "zts1:abc:def", "refresh": "zts0:zts1:x", "grant": "zts0:"}
    token = make_token(user="eve@example.com", client_id="1000.C", client_secret="zts1:s:s")
    token.set_access_token(look_alikes["access"])
    token.set_refresh_token(look_alikes["refresh"])
    token.set_grant_token(look_alikes["grant"])
    empty.save_token(token)
    expected = (*look_alikes.values(), "zts1:s:s")

    def read(store: SQLAlchemyTokenStore) -> tuple[str, ...]:
        [stored] = store.get_tokens()
        found = store.find_token(make_token(access=look_alikes["access"]))
        assert found is not None and found.get_id() == stored.get_id()
        return (
            stored.get_access_token(),
            stored.get_refresh_token(),
            stored.get_grant_token(),
            stored.get_client_secret(),
        )

    assert read(empty) == expected
    reseal(empty.engine, empty.table, PlainCodec(), Keyring([KEY_A]))
    keyed = _store(shared_backend, [KEY_A])
    assert read(keyed) == expected
    [row] = _raw_rows(empty)
    assert row["access_token"].startswith(f"zts1:{Keyring([KEY_A]).key_id}:")
    reseal(empty.engine, empty.table, Keyring([KEY_A]), PlainCodec())
    assert read(empty) == expected
    [row] = _raw_rows(empty)
    assert (row["access_token"], row["refresh_token"], row["grant_token"]) == (
        "zts0:zts1:abc:def",
        "zts0:zts0:zts1:x",
        "zts0:zts0:",
    )
    keyed.close()
