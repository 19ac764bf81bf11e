"""Refresh coordination on every backend: who refreshes a due token, and who waits."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from conftest import Backend, StatementLog
from tokens import full_token, make_token
from zoho_token_store import SQLAlchemyTokenStore, TokenStoreError
from zoho_token_store.refresh import SDK_REFRESH_WINDOW_MS, Action, RefreshPolicy
from zoho_token_store.store import DUE


def _ms_from_now(seconds: float) -> str:
    return str(int((time.time() + seconds) * 1000))


def _lease_of(store: SQLAlchemyTokenStore, token_id: str) -> int | None:
    table = store.table
    with store.engine.connect() as conn:
        return conn.execute(
            select(table.c.refresh_lease_until).where(table.c.id == token_id)
        ).scalar_one()


def _save_old(store: SQLAlchemyTokenStore, token) -> None:
    """Save ``token`` as if its access token had been issued an hour before it expires."""
    store.save_token(token)
    table = store.table
    with store.engine.connect() as conn:
        conn.execute(
            table.update()
            .where(table.c.id == token.get_id())
            .values(issued_at=int(token.get_expires_in()) - 3_600_000)
        )


def _second_store(backend: Backend, store: SQLAlchemyTokenStore, policy: RefreshPolicy):
    """Another worker's store on the same table (in-memory SQLite: the same engine)."""
    if backend.name == "sqlite_memory":
        return SQLAlchemyTokenStore(store.engine, table_name=backend.table_name, refresh=policy)
    return SQLAlchemyTokenStore(backend.url, table_name=backend.table_name, refresh=policy)


# --- the policy, without a database -----------------------------------------------------


def test_policy_margin_is_capped_at_a_fraction_of_the_token_lifetime():
    policy = RefreshPolicy(margin=300, margin_fraction=0.5)

    assert policy.margin_ms(expiry=3_600_000, issued_at=0) == 300_000
    assert policy.margin_ms(expiry=60_000, issued_at=0) == 30_000
    # Never inside the SDK's own refresh window, where the SDK refreshes regardless.
    assert policy.margin_ms(expiry=4_000, issued_at=0) == SDK_REFRESH_WINDOW_MS
    assert policy.margin_ms(expiry=3_600_000, issued_at=None) == 300_000


@pytest.mark.parametrize(
    ("remaining_ms", "lease_left_ms", "expected"),
    [
        (600_000, None, Action.USE),
        (200_000, None, Action.LEASE),
        (200_000, -1, Action.LEASE),  # an expired lease is free again
        (200_000, 20_000, Action.USE),  # someone refreshes; the token is still good
        (3_000, 20_000, Action.WAIT),  # inside the SDK window: wait for the new token
        (-5_000, 20_000, Action.WAIT),
    ],
)
def test_policy_action(remaining_ms, lease_left_ms, expected):
    now = 10**12
    lease_until = None if lease_left_ms is None else now + lease_left_ms
    policy = RefreshPolicy(margin=300)

    assert policy.action(now + remaining_ms, now - 3_600_000, lease_until, now) is expected


def test_policy_disabled_always_uses_the_stored_token():
    assert RefreshPolicy(enabled=False).action(0, None, None, 10**12) is Action.USE


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"margin_fraction": 0}, "margin_fraction must be more than 0, at most 1"),
        ({"margin_fraction": 1.5}, "margin_fraction must be more than 0, at most 1"),
        ({"lease_timeout": -1}, "lease_timeout must not be negative"),
        ({"max_wait": -1}, "max_wait must not be negative"),
        ({"poll_interval": 0}, "poll_interval must be more than 0"),
        ({"lease_timeout": "30"}, "lease_timeout must be a number of seconds, got str"),
        ({"margin": True}, "margin must be a number of seconds, got bool"),
        ({"enabled": "no"}, "enabled must be True or False, got str"),
    ],
)
def test_policy_refuses_nonsense_settings_naming_the_setting(settings, message):
    with pytest.raises(TokenStoreError) as info:
        RefreshPolicy(**settings)
    assert (info.value.code, info.value.error_message) == (
        "TOKEN_STORE",
        f"RefreshPolicy: {message}",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"refresh": "yes"}, "refresh must be a RefreshPolicy or None, got str"),
        (
            {"engine_options": [1]},
            "engine_options must be a mapping of create_engine arguments, got list",
        ),
        ({"allow_plaintext": "no"}, "allow_plaintext must be True or False, got str"),
    ],
)
def test_a_store_refuses_settings_of_the_wrong_type_naming_them(options, message):
    with pytest.raises(TokenStoreError) as info:
        SQLAlchemyTokenStore("sqlite://", **options)
    assert (info.value.code, info.value.error_message) == ("TOKEN_STORE", message)


# --- on the database ----------------------------------------------------------------------


def test_a_token_that_is_not_due_is_read_with_one_select_and_no_lease(
    store, statements: StatementLog
):
    token = full_token("ann@example.com", expires=_ms_from_now(3600))
    store.save_token(token)

    with statements.recording() as ran:
        found = store.find_token_by_id(token.get_id())

    assert ran == ["SELECT"]
    assert found.get_expires_in() == token.get_expires_in()
    assert _lease_of(store, token.get_id()) is None


def test_one_caller_wins_the_lease_and_the_others_keep_the_valid_token(backend: Backend, store):
    token = full_token("ann@example.com", expires=_ms_from_now(120))
    _save_old(store, token)
    other = _second_store(backend, store, RefreshPolicy())
    try:
        first = store.find_token_by_id(token.get_id())
        second = other.find_token_by_id(token.get_id())
        third = other.find_token(make_token(user="ann@example.com"))
    finally:
        other.close()

    assert first.get_expires_in() == DUE
    assert second.get_expires_in() == token.get_expires_in()
    assert third.get_expires_in() == token.get_expires_in()
    assert third.get_access_token() == token.get_access_token()
    assert _lease_of(store, token.get_id()) is not None


def test_saving_the_refreshed_token_releases_the_lease(store):
    token = full_token("ann@example.com", expires=_ms_from_now(120))
    _save_old(store, token)
    winner = store.find_token_by_id(token.get_id())
    assert winner.get_expires_in() == DUE

    # What the SDK saves after refreshing: a new access token and expiry.
    winner.set_access_token("1000.access.refreshed")
    winner.set_expires_in(_ms_from_now(3600))
    store.save_token(winner)

    assert _lease_of(store, token.get_id()) is None
    after = store.find_token_by_id(token.get_id())
    assert after.get_access_token() == "1000.access.refreshed"
    assert after.get_expires_in() == winner.get_expires_in()


def test_a_lease_whose_holder_died_expires_and_another_caller_wins(backend: Backend, store):
    policy = RefreshPolicy(lease_timeout=0.3)
    token = full_token("ann@example.com", expires=_ms_from_now(120))
    _save_old(store, token)
    first, second = _second_store(backend, store, policy), _second_store(backend, store, policy)
    try:
        assert first.find_token_by_id(token.get_id()).get_expires_in() == DUE
        assert second.find_token_by_id(token.get_id()).get_expires_in() == token.get_expires_in()
        time.sleep(0.5)  # the first caller never saves: it was killed mid-refresh
        assert second.find_token_by_id(token.get_id()).get_expires_in() == DUE
    finally:
        first.close()
        second.close()


def test_inside_the_sdk_window_a_caller_waits_for_the_lease_holders_new_token(
    backend: Backend, store
):
    token = full_token("ann@example.com", expires=_ms_from_now(3))
    _save_old(store, token)
    waiter = _second_store(backend, store, RefreshPolicy(max_wait=10))
    winner = store.find_token_by_id(token.get_id())
    assert winner.get_expires_in() == DUE

    def refresh_and_save() -> None:
        time.sleep(0.3)
        winner.set_access_token("1000.access.refreshed")
        winner.set_expires_in(_ms_from_now(3600))
        store.save_token(winner)

    saver = threading.Thread(target=refresh_and_save)
    saver.start()
    try:
        waited = waiter.find_token_by_id(token.get_id())
    finally:
        saver.join()
        waiter.close()

    assert waited.get_access_token() == "1000.access.refreshed"
    assert waited.get_expires_in() == winner.get_expires_in()


def test_a_wait_that_runs_out_takes_the_lease_over(backend: Backend, store):
    token = full_token("ann@example.com", expires=_ms_from_now(3))
    _save_old(store, token)
    waiter = _second_store(backend, store, RefreshPolicy(max_wait=0.2))
    try:
        assert store.find_token_by_id(token.get_id()).get_expires_in() == DUE
        held = _lease_of(store, token.get_id())
        waited = waiter.find_token_by_id(token.get_id())
    finally:
        waiter.close()

    # Nothing deadlocks: the waiter refreshes in the place of the stuck holder.
    assert waited.get_expires_in() == DUE
    assert _lease_of(store, token.get_id()) != held


def test_a_short_lived_token_is_not_due_right_after_it_is_saved(store):
    # 60 s of life with a 300 s margin: the margin is capped at half the lifetime.
    token = full_token("ann@example.com", expires=_ms_from_now(60))
    store.save_token(token)

    assert store.find_token_by_id(token.get_id()).get_expires_in() == token.get_expires_in()


def test_many_concurrent_readers_of_a_due_token_make_exactly_one_winner(backend: Backend, store):
    token = full_token("ann@example.com", expires=_ms_from_now(120))
    _save_old(store, token)
    readers = [_second_store(backend, store, RefreshPolicy()) for _ in range(8)]
    barrier = threading.Barrier(len(readers))
    expiries: list[str] = []

    def read(reader: SQLAlchemyTokenStore) -> None:
        barrier.wait()
        expiries.append(reader.find_token_by_id(token.get_id()).get_expires_in())

    threads = [threading.Thread(target=read, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for reader in readers:
        reader.close()

    assert sorted(expiries) == sorted([DUE] + [token.get_expires_in()] * 7)


def test_coordination_off_returns_the_stored_token_untouched(backend: Backend, store):
    token = full_token("ann@example.com", expires=_ms_from_now(1))
    _save_old(store, token)
    plain = _second_store(backend, store, RefreshPolicy(enabled=False))
    try:
        found = plain.find_token_by_id(token.get_id())
    finally:
        plain.close()

    assert found.get_expires_in() == token.get_expires_in()
    assert _lease_of(store, token.get_id()) is None


def test_get_tokens_ignores_coordination(store):
    token = full_token("ann@example.com", expires=_ms_from_now(120))
    _save_old(store, token)

    assert [t.get_expires_in() for t in store.get_tokens()] == [token.get_expires_in()]
    assert _lease_of(store, token.get_id()) is None
