"""Concurrent workers on one token table: processes, threads, and forked children.

The workload (``run_worker``) is what an app's workers do to the store:
save full tokens (after a grant exchange), save refresh-less tokens (after a
refresh: Zoho's response has no refresh token), find by user name and by id,
and delete. Every save writes values no other save writes, with the access
token and the expiry of one save carrying the same tag, so the final table
can be checked exactly:

- no error escaped any worker;
- one row per user that exists; the "stable" users, saved before the run and
  never deleted, all exist;
- every stored value is one some worker (or the seed) wrote, and a row's
  access token and expiry come from the same save;
- no stored refresh token was blanked: a stable user's row has one at the end
  and in every read during the run.

CI sizes are small (seconds); ``ZTS_LONG=1`` runs ten times the operations.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc

from conftest import Backend
from tokens import as_dict, make_token
from zoho_token_store import DatabaseError, SQLAlchemyTokenStore
from zoho_token_store.refresh import RefreshPolicy

LONG = os.environ.get("ZTS_LONG") == "1"
PROCESSES = 4
THREADS = 4
OPERATIONS_PER_THREAD = 400 if LONG else 40
STABLE_USERS = [f"stable-{n}@example.com" for n in range(3)]
CHURN_USERS = [f"churn-{n}@example.com" for n in range(3)]
USERS = STABLE_USERS + CHURN_USERS
CLIENT_ID = "1000.CONCURRENT"
BASE_EXPIRY = 4102444800000  # 2100-01-01: never due for refresh
SEED_TAG = "seed"
WAIT = 120  # seconds: a generous bound on any one phase, so a hang fails instead of blocking


def client_secret(user: str) -> str:
    return f"secret.{user}"


def expiry(tag: str) -> str:
    """A distinct expiry per save, from which the save's tag can be read back."""
    if tag == SEED_TAG:
        return str(BASE_EXPIRY)
    worker, _, n = tag.partition("n")
    process, _, thread = worker[1:].partition("t")
    return str(BASE_EXPIRY + (int(process) * 100 + int(thread) + 1) * 1_000_000 + int(n))


def full_token(user: str, tag: str, token_id: str | None = None) -> Any:
    return make_token(
        id=token_id,
        user=user,
        client_id=CLIENT_ID,
        client_secret=client_secret(user),
        refresh=f"1000.refresh.{user}.{tag}",
        access=f"1000.access.{user}.{tag}",
        expires=expiry(tag),
        api_domain="https://www.zohoapis.com",
    )


def refreshed_token(user: str, tag: str, token_id: str | None) -> Any:
    """What the SDK saves after a refresh: no refresh token."""
    return make_token(
        id=token_id, user=user, access=f"1000.access.{user}.{tag}", expires=expiry(tag)
    )


def problems_in(token: dict[str, str | None] | None, user: str) -> list[str]:
    """What is wrong with a token read for ``user`` (``as_dict`` form)."""
    if token is None:
        return [f"{user}: a stable user's token is missing"] if user in STABLE_USERS else []
    found: list[str] = []
    access = token["access_token"] or ""
    tag = access.rsplit(".", 1)[-1]
    if not access.startswith(f"1000.access.{user}.") or token["expires_in"] != expiry(tag):
        found.append(f"{user}: access token and expiry of different saves: {token}")
    if user in STABLE_USERS and token["refresh_token"] is None:
        found.append(f"{user}: the stored refresh token was blanked")
    return found


@dataclass
class WorkerResult:
    """What one thread wrote, saw and suffered."""

    written: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    operations: int = 0

    def merge(self, other: WorkerResult) -> None:
        for key, values in other.written.items():
            self.written[key] |= values
        self.errors += other.errors
        self.problems += other.problems
        self.operations += other.operations


def run_worker(store: SQLAlchemyTokenStore, name: str, operations: int) -> WorkerResult:
    """One worker's random mix of the store's operations; never raises."""
    rng = random.Random(name)
    result = WorkerResult()
    ids: dict[str, str] = {}
    for n in range(operations):
        user = rng.choice(USERS)
        action = rng.choice(["save", "save_refreshed", "find", "find_by_id", "delete"])
        if action == "delete" and user in STABLE_USERS:
            action = "find"
        tag = f"{name}n{n}"
        try:
            if action == "save":
                token = full_token(user, tag, ids.get(user))
                result.written[f"{user} refresh"].add(token.get_refresh_token())
                result.written[f"{user} access"].add(token.get_access_token())
                store.save_token(token)
                ids[user] = token.get_id()
            elif action == "save_refreshed":
                token = refreshed_token(user, tag, ids.get(user))
                result.written[f"{user} access"].add(token.get_access_token())
                store.save_token(token)
                ids[user] = token.get_id()
            elif action == "find":
                found = store.find_token(make_token(user=user))
                result.problems += problems_in(as_dict(found), user)
                if found is not None:
                    ids[user] = found.get_id()
            elif action == "find_by_id" and user in ids:
                found = store.find_token_by_id(ids[user])
                if found is not None:
                    result.problems += problems_in(as_dict(found), user)
            elif action == "delete" and user in ids:
                store.delete_token(ids.pop(user))
        except Exception as exc:  # every failure is a finding, whatever its type
            result.errors.append(f"{name} {action} {user}: {type(exc).__name__}: {exc}")
        result.operations += 1
    return result


def run_threads(
    store: SQLAlchemyTokenStore, name: str, threads: int, operations: int
) -> WorkerResult:
    """``threads`` workers on one shared store, started together."""
    barrier = threading.Barrier(threads)
    results = [WorkerResult() for _ in range(threads)]

    def work(index: int) -> None:
        barrier.wait(timeout=WAIT)
        results[index] = run_worker(store, f"{name}t{index}", operations)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=WAIT)
    total = WorkerResult()
    for thread in pool:
        if thread.is_alive():
            total.errors.append(f"{thread.name} did not finish within {WAIT} s")
    for result in results:
        total.merge(result)
    return total


_barrier: Any = None  # in each worker process: the barrier its tasks start on


def _remember_barrier(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def process_task(
    url: str, table_name: str, backend_name: str, index: int, operations: int
) -> WorkerResult:
    """One worker process's part of a run: its own store from the URL, ``THREADS`` threads.

    The process waits for its peers first, so that all of them work at once.
    """
    try:
        store = SQLAlchemyTokenStore(
            url, table_name=table_name, refresh=RefreshPolicy(enabled=False)
        )
        try:
            _barrier.wait(timeout=WAIT)
            result = run_threads(store, f"p{index}", THREADS, operations)
        finally:
            store.close()
    except Exception as exc:
        result = WorkerResult(errors=[f"process {index}: {type(exc).__name__}: {exc}"])
    result.written = dict(result.written)  # picklable
    return result


@pytest.fixture(scope="module")
def worker_processes() -> Iterator[ProcessPoolExecutor]:
    """``PROCESSES`` spawned processes, started once for every backend's run."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        PROCESSES,
        mp_context=context,
        initializer=_remember_barrier,
        initargs=(context.Barrier(PROCESSES),),
    ) as pool:
        yield pool


def seed(store: SQLAlchemyTokenStore) -> WorkerResult:
    """The stable users' rows, saved before the workers start."""
    store.delete_tokens()
    seeded = WorkerResult()
    for user in STABLE_USERS:
        token = full_token(user, SEED_TAG)
        store.save_token(token)
        seeded.written[f"{user} refresh"].add(token.get_refresh_token())
        seeded.written[f"{user} access"].add(token.get_access_token())
    return seeded


def assert_final_table_is_consistent(store: SQLAlchemyTokenStore, run: WorkerResult) -> None:
    assert run.errors == []
    assert run.problems == []
    rows = [as_dict(token) for token in store.get_tokens()]
    users = [row["user_name"] for row in rows]
    assert len(users) == len(set(users)), "one row per user"
    assert set(STABLE_USERS) <= set(users) <= set(USERS)
    for row in rows:
        user = str(row["user_name"])
        assert problems_in(row, user) == []
        assert row["access_token"] in run.written[f"{user} access"]
        refresh = row["refresh_token"]
        assert refresh in run.written[f"{user} refresh"] or (
            refresh is None and user in CHURN_USERS
        )
        assert (row["client_id"], row["client_secret"]) in {
            (CLIENT_ID, client_secret(user)),
            (None, None),  # a churn user's row re-created by a refresh-less save
        }
        assert row["client_id"] is not None or user in CHURN_USERS


@pytest.fixture
def shared_table(shared_backend: Backend, shared_store: SQLAlchemyTokenStore) -> Iterator[Backend]:
    """A backend other processes can reach, its table empty before and after."""
    yield shared_backend
    shared_store.delete_tokens()


def test_processes_of_threads_saving_finding_and_deleting_keep_one_consistent_row_per_user(
    shared_table: Backend,
    shared_store: SQLAlchemyTokenStore,
    worker_processes: ProcessPoolExecutor,
    record_property: Callable[[str, object], None],
) -> None:
    run = seed(shared_store)
    tasks = [
        worker_processes.submit(
            process_task,
            shared_table.url,
            shared_table.table_name,
            shared_table.name,
            index,
            OPERATIONS_PER_THREAD,
        )
        for index in range(PROCESSES)
    ]
    for task in tasks:
        run.merge(task.result(timeout=WAIT))

    assert run.operations == PROCESSES * THREADS * OPERATIONS_PER_THREAD
    assert not [e for e in run.errors if "database is locked" in e]
    assert_final_table_is_consistent(shared_store, run)
    record_property("concurrency_workers", PROCESSES * THREADS)
    record_property("concurrency_operations", run.operations)


SHARED_STORE_THREADS = 8


def test_threads_sharing_one_store_keep_one_consistent_row_per_user(
    backend: Backend,
    store: SQLAlchemyTokenStore,
    record_property: Callable[[str, object], None],
) -> None:
    shared = SQLAlchemyTokenStore(
        store.engine if backend.name == "sqlite_memory" else backend.url,
        table_name=backend.table_name,
        refresh=RefreshPolicy(enabled=False),
    )
    try:
        run = seed(shared)
        run.merge(run_threads(shared, "p9", SHARED_STORE_THREADS, OPERATIONS_PER_THREAD))
        assert run.operations == SHARED_STORE_THREADS * OPERATIONS_PER_THREAD
        assert_final_table_is_consistent(shared, run)
    finally:
        shared.delete_tokens()
        shared.close()
    record_property("concurrency_workers", SHARED_STORE_THREADS)
    record_property("concurrency_operations", run.operations)


def test_a_save_whose_row_another_worker_deletes_meanwhile_succeeds(
    shared_backend: Backend, shared_store: SQLAlchemyTokenStore, request: pytest.FixtureRequest
) -> None:
    # After a refresh the SDK may save a token without an id. Without UPDATE ...
    # RETURNING (MySQL, MariaDB) the store updates by user name, then reads the
    # row's id in a second statement; here another worker deletes the row in
    # between. Either order of the save and the delete is a correct outcome;
    # an error for a save that was applied is not.
    user = CHURN_USERS[0]
    shared_store.save_token(full_token(user, SEED_TAG))
    other = SQLAlchemyTokenStore(shared_backend.url, table_name=shared_backend.table_name)
    updated: list[str] = []

    def delete_between(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb == "UPDATE":
            updated.append(statement)
        elif verb == "SELECT" and updated and len(updated) < 2:
            updated.append("deleted")
            other.delete_tokens()

    event.listen(shared_store.engine, "before_cursor_execute", delete_between)
    try:
        shared_store.save_token(refreshed_token(user, "p1t1n1", None))
    finally:
        event.remove(shared_store.engine, "before_cursor_execute", delete_between)
        other.close()

    rows = [as_dict(t) for t in shared_store.get_tokens()]
    assert rows == [] or [(r["user_name"], r["access_token"]) for r in rows] == [
        (user, f"1000.access.{user}.p1t1n1")
    ]


def test_a_save_whose_row_is_recreated_under_its_id_meanwhile_updates_it(
    shared_backend: Backend, shared_store: SQLAlchemyTokenStore
) -> None:
    # The save carries its row's id. Just before its UPDATE by user name,
    # another worker deletes the row; just before its UPDATE by id (the
    # fallback), a third worker that held the same id saves the user again,
    # re-creating the row under that id. The row is this user's: the save
    # updates it, and is not refused as a save into another user's row.
    user = CHURN_USERS[0]
    shared_store.save_token(full_token(user, SEED_TAG, "row-x"))
    other = SQLAlchemyTokenStore(shared_backend.url, table_name=shared_backend.table_name)
    steps: list[str] = []

    def race(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb, where = statement.split(None, 1)[0].upper(), statement.rsplit("WHERE", 1)[-1]
        if verb == "UPDATE" and "user_name" in where.split("OR")[0] and not steps:
            steps.append("deleted")
            other.delete_tokens()
        elif verb == "UPDATE" and steps == ["deleted"]:
            steps.append("re-created")
            other.save_token(full_token(user, "p7t0n0", "row-x"))

    event.listen(shared_store.engine, "before_cursor_execute", race)
    try:
        shared_store.save_token(refreshed_token(user, "p1t1n1", "row-x"))
    finally:
        event.remove(shared_store.engine, "before_cursor_execute", race)
        other.close()

    assert steps == ["deleted", "re-created"]
    rows = [as_dict(t) for t in shared_store.get_tokens()]
    assert [(r["id"], r["user_name"], r["access_token"], r["refresh_token"]) for r in rows] == [
        ("row-x", user, f"1000.access.{user}.p1t1n1", f"1000.refresh.{user}.p7t0n0")
    ]


def save_losing_the_insert_race(
    backend: Backend, store: SQLAlchemyTokenStore, losses: int
) -> tuple[list[str], Exception | None]:
    """Save while another worker makes the save's INSERT lose ``losses`` times.

    Just before each UPDATE by user name, the other worker deletes the user's
    row, and just before each INSERT (up to ``losses`` of them) re-creates it:
    the insert fails on the unique user name. Returns the other worker's saves
    and the error the save raised, if any.
    """
    user = CHURN_USERS[0]
    other = SQLAlchemyTokenStore(backend.url, table_name=backend.table_name)
    reinserted: list[str] = []

    def race(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb, where = statement.split(None, 1)[0].upper(), statement.rsplit("WHERE", 1)[-1]
        if verb == "UPDATE" and "user_name" in where:
            other.delete_tokens()
        elif verb == "INSERT" and len(reinserted) < losses:
            reinserted.append(f"p7t0n{len(reinserted)}")
            other.save_token(full_token(user, reinserted[-1]))

    event.listen(store.engine, "before_cursor_execute", race)
    try:
        store.save_token(refreshed_token(user, "p1t1n1", "stale-row-id"))
    except Exception as exc:
        return reinserted, exc
    finally:
        event.remove(store.engine, "before_cursor_execute", race)
        other.close()
    return reinserted, None


@pytest.mark.parametrize("losses", [2, 9])
def test_a_save_that_keeps_losing_the_insert_race_still_saves(
    shared_backend: Backend, shared_store: SQLAlchemyTokenStore, losses: int
) -> None:
    # Each lost race means another worker made progress, so the save runs
    # again until it finds the row: up to ten attempts (retry.RACE_ATTEMPTS).
    reinserted, error = save_losing_the_insert_race(shared_backend, shared_store, losses)

    assert (reinserted, error) == ([f"p7t0n{n}" for n in range(losses)], None)
    user = CHURN_USERS[0]
    rows = [as_dict(t) for t in shared_store.get_tokens()]
    assert [(r["user_name"], r["access_token"]) for r in rows] == [
        (user, f"1000.access.{user}.p1t1n1")
    ]


def test_a_save_that_loses_the_insert_race_ten_times_gives_up_with_a_clear_error(
    shared_backend: Backend, shared_store: SQLAlchemyTokenStore
) -> None:
    reinserted, error = save_losing_the_insert_race(shared_backend, shared_store, 11)

    # Ten attempts, each losing; the eleventh INSERT never happens.
    assert reinserted == [f"p7t0n{n}" for n in range(10)]
    assert isinstance(error, DatabaseError)
    assert isinstance(error.cause, sa_exc.IntegrityError)
    # The unique user name, as each backend names it.
    table = shared_backend.table_name
    message = error.error_message
    assert message.startswith("save_token failed: ")
    assert f"ix_{table}_user_name" in message or f"{table}.user_name" in message
    user = CHURN_USERS[0]
    rows = [as_dict(t) for t in shared_store.get_tokens()]
    assert [(r["user_name"], r["access_token"]) for r in rows] == [
        (user, f"1000.access.{user}.p7t0n9")
    ]


def test_a_first_connection_to_a_rollback_journal_sqlite_file_waits_for_a_writer(
    tmp_path: Any,
) -> None:
    # A file the migrations did not set up (an app's own database, a copy made
    # with VACUUM INTO) is in rollback-journal mode. The store switches each new
    # connection to WAL; while another process is writing, the switch cannot
    # wait (SQLite does not call the busy handler where a lock upgrade could
    # deadlock). The connection must then go on in rollback-journal mode and
    # wait for the writer, and a later connection make the switch.
    path = tmp_path / "rollback.db"
    url = f"sqlite:///{path}"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode = DELETE")
    store = SQLAlchemyTokenStore(url)
    store.table.metadata.create_all(store.engine)
    store.close()
    with sqlite3.connect(path) as setup:
        assert setup.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # another process, in the middle of a write
    done = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    done.start()
    store = SQLAlchemyTokenStore(url, refresh=RefreshPolicy(enabled=False))
    try:
        store.save_token(full_token(STABLE_USERS[0], SEED_TAG, "row-1"))
        assert [t.get_id() for t in store.get_tokens()] == ["row-1"]
    finally:
        done.join()
        writer.close()
        store.close()
    store = SQLAlchemyTokenStore(url, refresh=RefreshPolicy(enabled=False))
    try:
        assert [t.get_id() for t in store.get_tokens()] == ["row-1"]
    finally:
        store.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# --- fork --------------------------------------------------------------------------------

FORK_WARNING = pytest.mark.filterwarnings(
    # Python 3.12+ warns about fork() beside threads (pytest-xdist runs some);
    # the children here only run the store and exit.
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
SESSION_ID = {
    "postgresql": "SELECT pg_backend_pid()",
    "mariadb": "SELECT CONNECTION_ID()",
}


def checked_out(store: SQLAlchemyTokenStore, backend_name: str) -> tuple[Any, Any]:
    """The DBAPI connection the pool hands out next, and its server session id."""
    with store.engine.connect() as conn:
        query = SESSION_ID.get(backend_name)
        session = conn.execute(text(query)).scalar_one() if query else None
        return conn.connection.dbapi_connection, session


def in_forked_child(work: Callable[[], object]) -> object:
    """Run ``work`` in a child of ``os.fork()``; return its result (or raise its error)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            try:
                payload = pickle.dumps(("ok", work()))
            except BaseException as exc:
                payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kind, value = pickle.loads(data)  # noqa: S301  # our own child's output
    if kind == "error":
        raise AssertionError(f"in the forked child: {value}")
    return value


@pytest.fixture
def used_store(shared_backend: Backend) -> Iterator[SQLAlchemyTokenStore]:
    """A store of its own, seeded: its pool holds a connection when the test forks."""
    store = SQLAlchemyTokenStore(
        shared_backend.url,
        table_name=shared_backend.table_name,
        refresh=RefreshPolicy(enabled=False),
    )
    seed(store)
    yield store
    store.delete_tokens()
    store.close()


@FORK_WARNING
def test_a_forked_child_opens_connections_of_its_own(
    shared_backend: Backend, used_store: SQLAlchemyTokenStore
) -> None:
    parent_connection, parent_session = checked_out(used_store, shared_backend.name)

    def child_work() -> object:
        # parent_connection stays referenced here, so a new connection cannot
        # take its place in memory and pass for it.
        connection, session = checked_out(used_store, shared_backend.name)
        return connection is parent_connection, session

    reused, child_session = in_forked_child(child_work)  # type: ignore[misc]

    assert reused is False, "the child checked out the parent's DBAPI connection"
    if shared_backend.name in SESSION_ID:
        assert child_session != parent_session, "the child used the parent's server session"


@FORK_WARNING
def test_a_forked_child_reads_and_writes_and_the_parents_connection_survives_it(
    shared_backend: Backend, used_store: SQLAlchemyTokenStore
) -> None:
    stable = used_store.find_token(make_token(user=STABLE_USERS[0]))
    assert stable is not None
    parent_connection, parent_session = checked_out(used_store, shared_backend.name)
    invalidated: list[object] = []
    event.listen(used_store.engine, "invalidate", lambda *args: invalidated.append(args))

    def child_work() -> object:
        found = as_dict(used_store.find_token_by_id(stable.get_id()))
        used_store.save_token(full_token(CHURN_USERS[0], "p9t9n1", "child-row"))
        used_store.close()  # closes the child's own connections, not the parent's
        return found

    child_found = in_forked_child(child_work)

    assert child_found == as_dict(stable)
    # The parent's pooled connection is the same session, untouched by the child.
    connection, session = checked_out(used_store, shared_backend.name)
    assert (connection is parent_connection, session) == (True, parent_session)
    assert invalidated == []
    assert used_store.find_token_by_id("child-row") is not None


@FORK_WARNING
def test_forked_children_working_beside_their_parent_see_no_errors(
    shared_backend: Backend, used_store: SQLAlchemyTokenStore
) -> None:
    # Two children and the parent run the workload at once on the store the
    # parent had used before forking.
    children = []
    for index in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                result = run_worker(used_store, f"p{index}t0", OPERATIONS_PER_THREAD)
                code = 0 if not result.errors and not result.problems else 3
            finally:
                os._exit(code)
        children.append(pid)
    parent = run_worker(used_store, "p8t0", OPERATIONS_PER_THREAD)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]

    assert codes == [0, 0]
    assert parent.errors == []
    assert parent.problems == []
