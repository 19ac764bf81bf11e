"""A key rotation killed with SIGKILL partway through resumes with nothing lost, on every database.

``zoho-token-store rotate-key`` re-seals the table in batches, one
transaction each (rekey.py). Here it runs as a real process over a table
sealed under key A, with ``ZOHO_TOKEN_STORE_KEYS=B,A`` and a batch size that
makes several batches, and is killed with SIGKILL at one of two moments:

- **between batches**: two batches committed, the third not yet begun
  writing;
- **inside a batch**: two batches committed, and the third has rewritten its
  first row without committing it, so the database must roll that back.

The kill is not timed: the process runs the command line exactly as the
console script does (``zoho_token_store.cli.main``), with one SQLAlchemy
event listener added by this test, which at the chosen statement writes a
marker file and then waits to be killed. The test sees the marker, checks
through its own connection that exactly the first two batches are under B
and the rest still under A, and only then sends SIGKILL, to a process that is
certain to be mid-run. Nothing in the package knows about it.

After the kill, every row reads back exactly as it was saved, by id, by
refresh token and by access token (the digest columns), through a store
with keys [B, A]; the console script, run again, re-seals the rest; then
every row is under B, reads back exactly through a store with [B] alone, and
the row count is what it was.

In-memory SQLite is left out: another process cannot reach it.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

import zoho_token_store
from conftest import Backend
from tokens import CLIENT_ID, CLIENT_SECRET, as_dict, full_token, make_token
from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.crypto import KEYS_ENV_VAR, Keyring
from zoho_token_store.mapping import SECRET_COLUMNS
from zoho_token_store.refresh import RefreshPolicy

Fernet = pytest.importorskip("cryptography.fernet", reason="needs the [encryption] extra").Fernet
# The command line's extra (Typer needs Python 3.10; the 3.9 cells test the library alone).
pytest.importorskip("typer", reason="rotate-key needs the [cli] extra")

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
A, B = Keyring([KEY_A]).key_id, Keyring([KEY_B]).key_id

ROWS = 20
BATCH = 3
COMMITTED_BATCHES = 2
DONE_BEFORE_KILL = BATCH * COMMITTED_BATCHES
# Far longer than the rotation of 20 rows takes even on a loaded machine; a
# process that gets nowhere near the pause fails the test instead of hanging it.
PAUSE_DEADLINE_S = 120.0

SCRIPT = Path(sys.executable).parent / "zoho-token-store"

# Runs the command line as the console script does, with one listener on every
# engine. The statement it pauses at is the (COMMITTED_BATCHES + 1)th batch's
# SELECT of rows to re-seal ("between batches") or that batch's first UPDATE,
# after it ran ("inside a batch"). The pause writes the marker, then sleeps;
# the test kills the process during the sleep, and the exit after it only
# keeps a forgotten process from living on.
_PAUSING_CLI = """
import os, sys, time
from pathlib import Path
from sqlalchemy import Engine, event

table = os.environ["ZTS_TEST_TABLE"]
kind = os.environ["ZTS_TEST_PAUSE_AT"]  # "SELECT" or "UPDATE"
nth = int(os.environ["ZTS_TEST_PAUSE_NTH"])
marker = Path(os.environ["ZTS_TEST_MARKER"])
seen = 0

def is_batch_statement(statement):
    words = statement.split()
    if kind == "SELECT":
        # The batch SELECT is the only one of the table that orders and limits.
        return words[:1] == ["SELECT"] and "ORDER" in words and "LIMIT" in words and table in words
    return words[:2] == ["UPDATE", table]

def pause(conn, cursor, statement, parameters, context, executemany):
    global seen
    if is_batch_statement(statement):
        seen += 1
        if seen == nth:
            marker.write_text(str(os.getpid()))
            time.sleep(600)
            os._exit(3)

event.listen(Engine, "before_cursor_execute" if kind == "SELECT" else "after_cursor_execute", pause)

from zoho_token_store.cli import main
sys.exit(main(sys.argv[1:]))
"""

# moment -> (the statement to pause at, which one of its kind)
MOMENTS = {
    "between batches": ("SELECT", COMMITTED_BATCHES + 1),
    "inside a batch": ("UPDATE", DONE_BEFORE_KILL + 1),
}


def _environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZOHO_TOKEN_STORE_")}
    # The child imports the package the test imported (the work tree or the installed one).
    source = str(Path(zoho_token_store.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    environment[KEYS_ENV_VAR] = f"{KEY_B},{KEY_A}"
    environment.update(extra)
    return environment


def _cli(db: Backend, *args: str) -> list[str]:
    return ["--url", db.url, "--table", db.table_name, *args]


def _reader(db: Backend, keys: list[str]) -> SQLAlchemyTokenStore:
    return SQLAlchemyTokenStore(
        db.url,
        table_name=db.table_name,
        encryption_keys=keys,
        refresh=RefreshPolicy(enabled=False),
    )


def _key_ids_by_row(db: Backend) -> dict[str, str | None]:
    """Each row's key id, by row id, read through a connection of the test's own."""
    store = _reader(db, [KEY_B, KEY_A])
    try:
        table = store.table
        with store.engine.connect() as conn:
            rows = conn.execute(select(table.c.id, table.c.key_id)).all()
        return {row_id: key_id for row_id, key_id in rows}
    finally:
        store.close()


def _split(db: Backend) -> collections.Counter[str | None]:
    return collections.Counter(_key_ids_by_row(db).values())


def _fill(db: Backend) -> list[dict[str, str | None]]:
    """ROWS tokens saved by a store that seals with A; each as saved, id included."""
    store = _reader(db, [KEY_A])
    try:
        saved = []
        for n in range(ROWS):
            token = full_token(f"user{n:02d}@example.com", n)
            store.save_token(token)
            saved.append(as_dict(token))
        return [row for row in saved if row is not None]
    finally:
        store.close()


def _assert_reads_exactly(db: Backend, keys: list[str], saved: list[dict[str, str | None]]):
    """Every saved token reads back field for field: by id, by refresh token, by access token."""
    store = _reader(db, keys)
    try:
        assert sorted((as_dict(t) for t in store.get_tokens()), key=_by_id) == sorted(
            saved, key=_by_id
        )
        for row in saved:
            assert as_dict(store.find_token_by_id(row["id"])) == row
            by_refresh = store.find_token(
                make_token(
                    client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh=row["refresh_token"]
                )
            )
            assert by_refresh is not None and by_refresh.get_id() == row["id"]
            by_access = store.find_token(make_token(access=row["access_token"]))
            assert by_access is not None and by_access.get_id() == row["id"]
    finally:
        store.close()


def _assert_all_sealed_under(db: Backend, key_id: str) -> None:
    """Every secret in the table, as stored, is sealed under ``key_id``: none left in the clear."""
    store = _reader(db, [KEY_B, KEY_A])
    try:
        table = store.table
        columns = [table.c[name] for name in sorted(SECRET_COLUMNS)]
        with store.engine.connect() as conn:
            values = [v for row in conn.execute(select(*columns)) for v in row if v is not None]
    finally:
        store.close()
    # client_secret, refresh_token and access_token of every row (no grant tokens).
    assert len(values) == 3 * ROWS
    assert all(value.startswith(f"zts1:{key_id}:") for value in values)


def _by_id(row: dict[str, str | None] | None) -> str:
    assert row is not None
    return row["id"] or ""


def _wait_for_pause(process: subprocess.Popen[str], marker: Path, log: Path) -> None:
    deadline = time.monotonic() + PAUSE_DEADLINE_S
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(
                f"rotate-key ended (exit {process.returncode}) before it reached the pause: "
                "the kill would not have landed mid-run\n" + log.read_text()
            )
        if time.monotonic() > deadline:
            pytest.fail(f"rotate-key did not reach the pause in {PAUSE_DEADLINE_S:g} s")
        time.sleep(0.02)


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_rotation_killed_partway_resumes_with_nothing_lost(
    moment: str,
    shared_backend: Backend,
    shared_store: SQLAlchemyTokenStore,
    tmp_path: Path,
) -> None:
    """See the module docstring; ``shared_store`` only empties the table first."""
    db = shared_backend
    saved = _fill(db)
    ids = sorted(row["id"] or "" for row in saved)
    assert _split(db) == {A: ROWS}

    kind, nth = MOMENTS[moment]
    marker, log = tmp_path / "paused", tmp_path / "rotate-key.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PAUSING_CLI,
                *_cli(db, "rotate-key", "--batch-size", str(BATCH)),
            ],
            env=_environment(
                ZTS_TEST_TABLE=db.table_name,
                ZTS_TEST_PAUSE_AT=kind,
                ZTS_TEST_PAUSE_NTH=str(nth),
                ZTS_TEST_MARKER=str(marker),
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _wait_for_pause(process, marker, log)
        # Mid-run for certain: two batches committed (the rows with the
        # smallest ids: batches go in id order), the rest still under A.
        committed = _key_ids_by_row(db)
        assert [committed[i] for i in ids] == [B] * DONE_BEFORE_KILL + [A] * (
            ROWS - DONE_BEFORE_KILL
        )
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    # The killed batch left nothing behind: its uncommitted row is still under A.
    after_kill = _key_ids_by_row(db)
    assert len(after_kill) == ROWS
    assert [after_kill[i] for i in ids] == [B] * DONE_BEFORE_KILL + [A] * (ROWS - DONE_BEFORE_KILL)
    _assert_reads_exactly(db, [KEY_B, KEY_A], saved)

    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zoho_token_store.cli"]
    resumed = subprocess.run(
        [*command, *_cli(db, "rotate-key", "--batch-size", str(BATCH))],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    left = ROWS - DONE_BEFORE_KILL
    assert (resumed.returncode, resumed.stdout) == (
        0,
        f"{db.table_name}: {left} row(s) re-sealed (key {B}) in "
        f"{-(-left // BATCH)} batch(es); 0 deferred\n",
    ), resumed.stderr

    assert _split(db) == {B: ROWS}
    _assert_all_sealed_under(db, B)
    _assert_reads_exactly(db, [KEY_B], saved)

    cleanup = _reader(db, [KEY_B])
    try:
        cleanup.delete_tokens()
    finally:
        cleanup.close()
