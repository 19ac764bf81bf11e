"""Single-flight refresh across processes, with the real SDK, against Zoho's real limits.

On each database that processes share (SQLite file, PostgreSQL, MariaDB), a
few spawned worker processes initialize the Zoho SDK with their own
``SQLAlchemyTokenStore`` and call ``GET /crm/v8/Leads`` without a break
while access tokens that live 10 s come due again and again. FakeZoho, in
this process, enforces Zoho's limits and counts what they cost. The harness
and the definitions of the figures are in ``bench/refresh`` (``python -m
bench.refresh`` runs the same thing with 32 workers): a **generation** is a
refresh that is not redundant, and a refresh is redundant when a token issued
less than half a refresh period before it exists.

With coordination on, every expiry costs exactly one refresh, no refresh is
denied, no call fails, and every refreshed token is saved. With it off, the
figures are only recorded (``-s`` shows them): how many of the workers race
depends on timing. A lease holder killed before it refreshes holds the
others up for no longer than the lease timeout.

The first tests check the fake's new counters on a manual clock; the last
one, on the store alone, shows that waiters whose wait runs out let exactly
one of them take the dead holder's lease over.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import requests

from conftest import Backend
from tokens import full_token
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.fake_zoho import FakeZoho, ManualClock
from zoho_token_store.refresh import RefreshPolicy
from zoho_token_store.store import DUE

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # bench/ is not installed; spawned workers inherit sys.path
    sys.path.insert(0, _ROOT)

from bench.refresh.figures import Figures, figures, markdown_table  # noqa: E402
from bench.refresh.harness import RunResult, WorkerPool, run_scenario  # noqa: E402
from bench.refresh.model import KILL_AFTER_LEASE  # noqa: E402

WORKERS = 4
LIFETIME = 10  # s: the store's margin is then its floor, 7 s, so a token is due 3 s after issue
PAUSE = 0.02  # s between two calls of one worker
REINIT_EVERY = 10  # calls; each restart reads the token through find_token
LEASE_TIMEOUT = 2.0  # s, for the killed lease holder
# How late a takeover, or a call stalled behind a dead lease holder, may be
# beyond the lease timeout on a loaded two-core machine.
SLACK = 2.0

CLIENT_ID = "1000.FAKECLIENTID"
CLIENT_SECRET = "fake-client-secret-0123456789"
USER = "ada@example.com"


# --- the fake's counters, on a manual clock -------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeZoho]:
    with FakeZoho(clock=ManualClock(start=1_700_000_000.0)) as fake:
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        yield fake


def _token_call(fake: FakeZoho, **form: str) -> dict[str, object]:
    form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    response = requests.post(fake.accounts_url, data=form, timeout=10)
    assert response.status_code == 200  # Zoho answers OAuth errors with 200 too
    body: dict[str, object] = response.json()
    return body


def _crm_status(fake: FakeZoho, token: object) -> int:
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    return requests.get(f"{fake.api_url}/crm/v8/org", headers=headers, timeout=10).status_code


def test_the_fake_counts_refreshes_denials_and_their_times(fake):
    clock = fake.clock
    code = fake.issue_grant_token(CLIENT_ID, USER)
    refresh_token = str(
        _token_call(fake, grant_type="authorization_code", code=code)["refresh_token"]
    )
    for _ in range(12):  # the 11th and 12th are over the limit of 10 in 10 minutes
        clock.advance(1)
        _token_call(fake, grant_type="refresh_token", refresh_token=refresh_token)

    stats = fake.stats()
    assert (stats.exchanges, stats.refreshes, stats.throttled_refreshes) == (1, 10, 2)
    assert fake.throttled_refresh_count == 2
    start = 1_700_000_000.0
    assert stats.refresh_times == tuple(start + n for n in range(1, 11))
    assert fake.refresh_times == list(stats.refresh_times)
    grants = fake.grants
    assert [(g.grant_type, g.outcome) for g in grants] == [
        ("authorization_code", "ok"),
        *[("refresh_token", "ok")] * 10,
        *[("refresh_token", "Access Denied")] * 2,
    ]
    assert all(g.access_token is None for g in grants[-2:])
    assert grants[1].expires_at == start + 1 + 3600
    assert refresh_token not in repr(grants)


def test_the_fake_counts_invalid_token_calls_by_reason(fake):
    clock = fake.clock

    def refresh(refresh_token: str) -> object:
        return _token_call(fake, grant_type="refresh_token", refresh_token=refresh_token)[
            "access_token"
        ]

    code = fake.issue_grant_token(CLIENT_ID, USER)
    first = _token_call(fake, grant_type="authorization_code", code=code)
    refresh_token = str(first["refresh_token"])
    issued = [first["access_token"], *(refresh(refresh_token) for _ in range(10))]
    clock.advance(600)  # out of the refresh window; every token still lives an hour
    issued += [refresh(refresh_token) for _ in range(5)]  # the 16th drops the first
    fake.access_token_lifetime = 5
    code = fake.issue_grant_token(CLIENT_ID, "grace@example.com")
    short_lived = _token_call(fake, grant_type="authorization_code", code=code)["access_token"]
    clock.advance(5)
    requests.post(f"{fake.accounts_url}/revoke", data={"token": refresh_token}, timeout=10)

    assert [_crm_status(fake, t) for t in (issued[0], issued[-1], short_lived)] == [401] * 3
    assert _crm_status(fake, "1000.never.issued") == 401

    stats = fake.stats()
    assert stats.invalid_token_calls == fake.invalid_token_count == 4
    assert stats.invalid_token_reasons == {"dropped": 1, "revoked": 1, "expired": 1, "unknown": 1}
    assert [c.invalid_reason for c in fake.crm_calls] == [
        "dropped",
        "revoked",
        "expired",
        "unknown",
    ]


# --- N worker processes of the real SDK -------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    """WORKERS spawned worker processes (and a spare), shared by this module's runs."""
    with WorkerPool(WORKERS) as pool:
        yield pool


def _run(
    pool: WorkerPool,
    backend: Backend,
    scenario: str,
    policy: RefreshPolicy,
    duration: float,
    kill: str = "none",
) -> tuple[RunResult, Figures]:
    run = run_scenario(
        pool,
        backend=backend.name,
        url=backend.url,
        table_name=backend.table_name,
        scenario=scenario,
        policy=policy,
        lifetime=LIFETIME,
        duration=duration,
        pause=PAUSE,
        reinit_every=REINIT_EVERY,
        kill=kill,
    )
    row = figures(run)
    print(f"\n{markdown_table([row])}")  # shown with -s
    assert run.errors == []
    return run, row


def _refresh_gaps(run: RunResult) -> list[float]:
    issued = [g.at for g in run.grants if g.outcome == "ok"]
    return [later - earlier for earlier, later in zip(issued, issued[1:])]


@pytest.mark.slow
def test_coordinated_workers_refresh_once_per_expiry(
    pool: WorkerPool,
    shared_backend: Backend,
    shared_store: SQLAlchemyTokenStore,
    record_property: pytest.RecordProperty,
) -> None:
    # Tokens due at +3 s and +6 s: two expiries, each with every worker calling.
    run, row = _run(pool, shared_backend, "coordinated", RefreshPolicy(), duration=8.0)
    record_property("figures", asdict(row))

    assert run.dead == []
    assert row.calls > 0
    assert row.generations >= 2
    assert row.refreshes == row.generations  # exactly one refresh per expiry
    assert row.throttled == run.stats.throttled_refreshes == 0
    assert row.invalid_token_failures == run.stats.invalid_token_calls == 0
    assert row.failed_calls == 0
    assert row.saves_lost == 0
    assert row.unseen_in_table == 0
    assert row.final_is_newest
    assert run.stats.exchanges == 1  # only the parent's
    # Every refresh was one the store asked for through its lease: none of the
    # SDK's own, and none before the token was due.
    assert row.leases_find_token + row.leases_find_token_by_id == row.refreshes
    assert min(_refresh_gaps(run)) >= LIFETIME - row.margin - 0.1


@pytest.mark.slow
def test_uncoordinated_workers_figures_are_recorded(
    pool: WorkerPool,
    shared_backend: Backend,
    shared_store: SQLAlchemyTokenStore,
    record_property: pytest.RecordProperty,
) -> None:
    # The SDK refreshes by itself when less than 5 s remain: at +5 s.
    run, row = _run(
        pool, shared_backend, "uncoordinated", RefreshPolicy(enabled=False), duration=6.0
    )
    record_property("figures", asdict(row))

    # Only what does not depend on timing: the store never leased, the token
    # came due within the run, and the workers and the fake agree.
    assert run.dead == []
    assert row.leases_find_token + row.leases_find_token_by_id == 0
    assert row.refreshes + row.throttled >= 1
    assert row.invalid_token_failures == run.stats.invalid_token_calls
    assert row.refresh_denied_failures <= run.stats.throttled_refreshes


@pytest.mark.slow
def test_a_killed_lease_holder_holds_the_others_up_for_the_lease_timeout_only(
    pool: WorkerPool,
    shared_backend: Backend,
    shared_store: SQLAlchemyTokenStore,
    record_property: pytest.RecordProperty,
) -> None:
    # The first worker the store tells to refresh (at +3 s, 7 s before expiry)
    # dies at once by SIGKILL. The others are inside the 7 s window where the
    # store makes them wait; once the lease times out one of them takes it over.
    policy = RefreshPolicy(lease_timeout=LEASE_TIMEOUT)
    run, row = _run(pool, shared_backend, "killed-holder", policy, 6.0, kill=KILL_AFTER_LEASE)
    record_property("figures", asdict(row))

    assert len(run.dead) == 1 and run.kill_at is not None
    assert row.takeover_after_kill_s is not None
    assert LEASE_TIMEOUT - 0.5 <= row.takeover_after_kill_s <= LEASE_TIMEOUT + SLACK
    assert row.failed_calls == 0  # the others waited; none failed
    assert row.latency_max_ms <= (LEASE_TIMEOUT + SLACK) * 1000
    assert row.refreshes == row.generations >= 1
    assert row.throttled == row.invalid_token_failures == 0
    assert row.saves_lost == 0
    assert row.final_is_newest


# --- a lease holder that died, on the store alone ---------------------------------------


def test_waiters_whose_wait_runs_out_let_one_of_them_refresh(
    shared_backend: Backend, shared_store: SQLAlchemyTokenStore
) -> None:
    # A token 4 s from expiry, inside the SDK's window, whose lease holder
    # died: it took the lease for 30 s and will never save.
    token = full_token("ann@example.com", expires=str(int((time.time() + 4) * 1000)))
    shared_store.save_token(token)
    holder = shared_backend.store()
    assert holder.find_token_by_id(token.get_id()).get_expires_in() == DUE
    holder.close()

    waiters = [
        SQLAlchemyTokenStore(
            shared_backend.url,
            table_name=shared_backend.table_name,
            refresh=RefreshPolicy(max_wait=0.3),
        )
        for _ in range(4)
    ]
    barrier = threading.Barrier(len(waiters))
    got: list[tuple[bool, str]] = []

    def wait(store: SQLAlchemyTokenStore) -> None:
        barrier.wait()
        found = store.find_token_by_id(token.get_id())
        due = found.get_expires_in() == DUE
        if due:  # what the SDK then does: refresh, and save
            found.set_access_token("1000.access.refreshed")
            found.set_expires_in(str(int((time.time() + 3600) * 1000)))
            store.save_token(found)
        got.append((due, found.get_access_token()))

    threads = [threading.Thread(target=wait, args=(w,)) for w in waiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for waiter in waiters:
        waiter.close()

    # One waiter takes the dead holder's lease over and refreshes; the others
    # get its new token. (Today each gets the old one, 4 s from expiry, and
    # each one's SDK refreshes it.)
    assert sorted(due for due, _ in got) == [False, False, False, True]
    assert [access for _, access in got] == ["1000.access.refreshed"] * 4
