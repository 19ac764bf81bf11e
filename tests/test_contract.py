"""The TokenStore contract, pinned down on every backend through the ``store`` fixture."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select

from conftest import Backend, StatementLog, drop_schema
from tokens import CLIENT_ID, CLIENT_SECRET, as_dict, full_token, make_token
from zoho_token_store import InvalidTokenError, SQLAlchemyTokenStore, migrate


# Every contract test runs with encryption at rest off and on.
@pytest.fixture
def store(store_either_way: SQLAlchemyTokenStore) -> SQLAlchemyTokenStore:
    return store_either_way


# --- find_token: which row a token refers to ---------------------------------------


def test_find_token_by_user_name_fills_the_given_token_and_returns_it(store):
    saved = full_token("ann@example.com")
    store.save_token(saved)
    probe = make_token(user="ann@example.com")

    found = store.find_token(probe)

    assert found is probe
    assert as_dict(found) == as_dict(saved)


def test_find_token_by_user_name_wins_over_every_other_key(store):
    ann, bob = full_token("ann@example.com"), full_token("bob@example.com")
    store.save_token(ann)
    store.save_token(bob)
    # Bob's user name with Ann's access and refresh tokens: the user name decides.
    probe = make_token(
        user="bob@example.com", access=ann.get_access_token(), refresh=ann.get_refresh_token()
    )

    assert store.find_token(probe).get_id() == bob.get_id()


def test_find_token_by_access_token_when_client_id_and_secret_are_absent(store):
    ann = full_token("ann@example.com")
    store.save_token(ann)
    store.save_token(full_token("bob@example.com"))

    found = store.find_token(make_token(access=ann.get_access_token()))

    assert as_dict(found) == as_dict(ann)


def test_find_token_does_not_use_the_access_token_when_a_client_id_is_given(store):
    ann = full_token("ann@example.com")
    store.save_token(ann)

    assert store.find_token(make_token(access=ann.get_access_token(), client_id=CLIENT_ID)) is None


def test_find_token_by_grant_token_before_refresh_token_with_client_credentials(store):
    by_grant = make_token(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant=f"1000.grant.{'g' * 32}",
        access="1000.access.for-grant-row",
    )
    by_refresh = make_token(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh=f"1000.refresh.{'r' * 32}",
    )
    store.save_token(by_grant)
    store.save_token(by_refresh)
    probe = make_token(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        grant=by_grant.get_grant_token(),
        refresh=by_refresh.get_refresh_token(),
    )

    assert store.find_token(probe).get_id() == by_grant.get_id()


def test_find_token_by_refresh_token_with_client_credentials(store):
    ann = full_token("ann@example.com")
    store.save_token(ann)

    found = store.find_token(
        make_token(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh=ann.get_refresh_token()
        )
    )

    assert as_dict(found) == as_dict(ann)


def test_find_token_by_refresh_token_needs_both_client_id_and_secret(store):
    ann = full_token("ann@example.com")
    store.save_token(ann)

    assert (
        store.find_token(make_token(client_id=CLIENT_ID, refresh=ann.get_refresh_token())) is None
    )


def test_find_token_by_id_alone_as_the_sdk_revoke_does(store):
    store.save_token(full_token("ann@example.com"))
    bob = full_token("bob@example.com")
    store.save_token(bob)
    probe = make_token(id=bob.get_id())

    assert as_dict(store.find_token(probe)) == as_dict(bob)


def test_find_token_with_no_usable_key_returns_none_never_an_arbitrary_row(store):
    store.save_token(full_token("ann@example.com"))

    assert store.find_token(make_token(client_id=CLIENT_ID)) is None
    assert store.find_token(make_token(user="")) is None
    assert store.find_token(make_token(expires="1893456000000")) is None


def test_find_token_returns_none_when_nothing_matches(store):
    store.save_token(full_token("ann@example.com"))

    assert store.find_token(make_token(user="nobody@example.com")) is None
    assert store.find_token(make_token(access="1000.unknown")) is None


def test_find_token_keeps_its_own_access_token_when_it_expires_no_earlier(store):
    store.save_token(full_token("ann@example.com", expires="1893456000000"))
    probe = make_token(user="ann@example.com", access="1000.my-own-access", expires="1893456000000")

    found = store.find_token(probe)

    assert found.get_access_token() == "1000.my-own-access"
    assert found.get_expires_in() == "1893456000000"
    assert found.get_refresh_token() == full_token("ann@example.com").get_refresh_token()


def test_find_token_adopts_a_stored_access_token_that_expires_later(store):
    # Another worker refreshed and saved: this worker's copy converges on it.
    newer = full_token("ann@example.com", 2, expires="1893459600000")
    store.save_token(newer)
    probe = make_token(user="ann@example.com", access="1000.stale-access", expires="1893456000000")

    found = store.find_token(probe)

    assert found.get_access_token() == newer.get_access_token()
    assert found.get_expires_in() == "1893459600000"


def test_find_token_is_one_select(store, statements: StatementLog):
    store.save_token(full_token("ann@example.com"))

    with statements.recording() as ran:
        store.find_token(make_token(user="ann@example.com"))

    assert ran == ["SELECT"]


# --- save_token: upsert by the same keys -------------------------------------------


def test_save_token_inserts_a_row_with_a_new_uuid_id_set_back_on_the_token(store):
    token = full_token("ann@example.com")

    store.save_token(token)

    assert len(token.get_id()) == 36
    assert token.get_id().count("-") == 4
    assert [as_dict(t) for t in store.get_tokens()] == [as_dict(token)]


def test_save_token_keeps_an_id_the_token_already_carries(store):
    token = full_token("ann@example.com")
    token.set_id("42")

    store.save_token(token)

    assert store.find_token_by_id("42").get_user_signature().get_name() == "ann@example.com"


def test_save_token_after_a_refresh_never_blanks_the_stored_refresh_token(store):
    original = full_token("ann@example.com")
    store.save_token(original)
    # What the SDK saves after a refresh: Zoho's response carries no refresh token.
    refreshed = make_token(
        user="ann@example.com", access="1000.access.new", expires="1893459600000"
    )

    store.save_token(refreshed)

    stored = store.find_token_by_id(original.get_id())
    assert stored.get_refresh_token() == original.get_refresh_token()
    assert stored.get_client_secret() == CLIENT_SECRET
    assert stored.get_access_token() == "1000.access.new"
    assert stored.get_expires_in() == "1893459600000"
    assert refreshed.get_id() == original.get_id()


def test_save_token_treats_empty_strings_as_not_carried(store):
    original = full_token("ann@example.com")
    store.save_token(original)

    store.save_token(make_token(user="ann@example.com", access="1000.access.new", refresh=""))

    assert (
        store.find_token_by_id(original.get_id()).get_refresh_token()
        == original.get_refresh_token()
    )


def test_saving_one_user_many_times_keeps_one_row(store):
    for n in range(12):
        store.save_token(full_token("ann@example.com", n))

    tokens = store.get_tokens()
    assert len(tokens) == 1
    assert tokens[0].get_access_token() == full_token("ann@example.com", 11).get_access_token()


def test_saving_an_unchanged_token_again_updates_instead_of_inserting(store):
    # DBStore reads MySQL's changed-rows count and inserts a duplicate here.
    token = full_token("ann@example.com")
    store.save_token(token)

    store.save_token(full_token("ann@example.com"))

    assert [t.get_id() for t in store.get_tokens()] == [token.get_id()]


def test_eleven_users_get_eleven_distinct_ids(store):
    # DBStore's max(id)+1 over a varchar collides once ids reach 10.
    for n in range(11):
        store.save_token(full_token(f"user{n}@example.com"))

    assert len({t.get_id() for t in store.get_tokens()}) == 11


def test_save_token_by_refresh_token_updates_the_row_holding_it(store):
    ann = full_token("ann@example.com")
    store.save_token(ann)

    store.save_token(
        make_token(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh=ann.get_refresh_token(),
            access="1000.access.via-refresh",
        )
    )

    assert [(t.get_id(), t.get_access_token()) for t in store.get_tokens()] == [
        (ann.get_id(), "1000.access.via-refresh")
    ]


def test_a_save_that_learns_a_user_name_names_the_row_its_id_names(store):
    first = make_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant="1000.grant-1")
    store.save_token(first)

    store.save_token(make_token(id=first.get_id(), user="ann@example.com", access="1000.a-1"))

    assert [
        (t.get_id(), t.get_user_signature().get_name(), t.get_access_token())
        for t in store.get_tokens()
    ] == [(first.get_id(), "ann@example.com", "1000.a-1")]


def test_a_save_with_another_users_row_id_is_refused_and_changes_nothing(store):
    ann = full_token("ann@example.com")
    store.save_token(ann)
    before = [as_dict(t) for t in store.get_tokens()]

    with pytest.raises(InvalidTokenError) as info:
        store.save_token(make_token(id=ann.get_id(), user="carol@example.com", access="1000.c"))

    assert info.value.error_message == (
        f"save_token: id {ann.get_id()!r} is the row of another user, and a row keeps its "
        "user: save this user's token without that id"
    )
    assert [as_dict(t) for t in store.get_tokens()] == before


def test_save_token_without_any_credential_is_refused_and_changes_nothing(store):
    store.save_token(full_token("ann@example.com"))
    before = [as_dict(t) for t in store.get_tokens()]

    with pytest.raises(
        InvalidTokenError, match="save_token: the token carries no access, refresh or grant token"
    ):
        store.save_token(make_token(user="ann@example.com", client_id=CLIENT_ID, expires="1"))

    assert [as_dict(t) for t in store.get_tokens()] == before


def test_save_token_update_by_user_name_is_one_update(store, statements: StatementLog):
    token = full_token("ann@example.com")
    store.save_token(token)
    # As the SDK saves after a refresh: the token carries the id the store gave it.
    refreshed = full_token("ann@example.com", 2)
    refreshed.set_id(token.get_id())

    with statements.recording() as ran:
        store.save_token(refreshed)

    assert ran == ["UPDATE"]


def test_save_token_update_of_a_token_without_id_reads_the_id_only_without_returning(
    store, statements: StatementLog
):
    store.save_token(full_token("ann@example.com"))

    with statements.recording() as ran:
        store.save_token(full_token("ann@example.com", 2))

    # MySQL and MariaDB have no UPDATE ... RETURNING.
    assert ran == (["UPDATE"] if store.engine.dialect.update_returning else ["UPDATE", "SELECT"])


def test_expiry_round_trips_exactly_as_the_sdk_writes_it(store):
    # get_tokens returns stored values untouched by refresh coordination.
    for expires in ("0", "5000", "1893456000000", "999999999999999999"):
        store.save_token(full_token("ann@example.com", expires=expires))
        assert [t.get_expires_in() for t in store.get_tokens()] == [expires]


def test_concurrent_first_saves_of_one_user_make_one_row(backend: Backend, store):
    # Separate stores, as separate worker processes would have, racing on one new user.
    stores = [backend.store() for _ in range(6)] if backend.name != "sqlite_memory" else [store] * 6
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def save(worker: SQLAlchemyTokenStore, n: int) -> None:
        barrier.wait()
        try:
            worker.save_token(full_token("ann@example.com", n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in stores:
        if worker is not store:
            worker.close()

    assert errors == []
    with store.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(store.table)).scalar_one()
    assert rows == 1
    assert store.find_token(make_token(user="ann@example.com")).get_access_token() in {
        full_token("ann@example.com", n).get_access_token() for n in range(6)
    }


# --- the other four methods ----------------------------------------------------------


def test_find_token_by_id_returns_a_new_fully_populated_token(store):
    token = full_token("ann@example.com")
    store.save_token(token)

    found = store.find_token_by_id(token.get_id())

    assert found is not token
    assert as_dict(found) == as_dict(token)


def test_find_token_by_id_returns_none_for_an_unknown_id(store):
    assert store.find_token_by_id("no-such-id") is None


def test_get_tokens_returns_every_token_fully_populated(store):
    tokens = [full_token(f"user{n}@example.com") for n in range(3)]
    for token in tokens:
        store.save_token(token)

    assert sorted((as_dict(t) for t in store.get_tokens()), key=lambda d: d["user_name"]) == [
        as_dict(t) for t in tokens
    ]


def test_delete_token_removes_only_that_row(store):
    ann, bob = full_token("ann@example.com"), full_token("bob@example.com")
    store.save_token(ann)
    store.save_token(bob)

    store.delete_token(ann.get_id())

    assert [t.get_id() for t in store.get_tokens()] == [bob.get_id()]


def test_delete_token_with_an_unknown_id_is_not_an_error(store):
    store.save_token(full_token("ann@example.com"))

    store.delete_token("no-such-id")

    assert len(store.get_tokens()) == 1


def test_delete_tokens_empties_this_table_only(backend: Backend, store):
    other_name = f"other_{os.getpid()}"
    if backend.name == "sqlite_memory":
        other = SQLAlchemyTokenStore(store.engine, table_name=other_name)
        other.table.metadata.create_all(store.engine)
    else:
        migrate.upgrade(backend.url, table_name=other_name)
        other = SQLAlchemyTokenStore(backend.url, table_name=other_name)
    try:
        other.save_token(full_token("ann@example.com"))
        store.save_token(full_token("bob@example.com"))

        store.delete_tokens()

        assert store.get_tokens() == []
        assert [t.get_user_signature().get_name() for t in other.get_tokens()] == [
            "ann@example.com"
        ]
    finally:
        other.close()
        if backend.name != "sqlite_memory":
            drop_schema(backend.url, other_name)
