"""The benchmark still runs: ``python -m bench --quick`` on each backend, as a subprocess.

Checks that it exits 0, that it measured and printed every operation for
every contender of the backend, and that it counted statements, round trips
and connections. It times nothing (``--quick`` runs each operation three
times at 10 rows); the figures are in docs/performance.md. ``--encryption``
adds the encrypted store on each database, on a table whose rows are sealed
(checked here on its own, in process).

Server URLs come from the same variables as the other tests, and
``ZTS_BACKENDS`` narrows the backends as it does there; an unreachable server
skips its case unless ``ZTS_REQUIRE_BACKENDS=1``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import MetaData, inspect, select, text

from zoho_token_store import SQLAlchemyTokenStore
from zoho_token_store.engine import make_engine, resolve_url
from zoho_token_store.models import token_table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not installed
    sys.path.insert(0, str(ROOT))
SERVER_URLS = {
    "postgresql": os.environ.get(
        "ZTS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("ZTS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
OPERATIONS = {
    "find_user": "find_token (user)",
    "find_refresh": "find_token (refresh)",
    "find_access": "find_token (access)",
    "find_by_id": "find_token_by_id",
    "save_update": "save_token (update)",
    "save_insert": "save_token (insert)",
    "get_tokens": "get_tokens",
}
HAS_MYSQL_CONNECTOR = importlib.util.find_spec("mysql.connector") is not None
CONTENDERS = {
    "sqlite": ["floor/sqlite", "store/sqlite"],
    "postgresql": ["floor/postgresql", "store/postgresql"],
    "mariadb": ["floor/mariadb", "store/mariadb"]
    + (["DBStore/mariadb"] if HAS_MYSQL_CONNECTOR else []),
    "file": ["FileStore/csv"],
}
# The backends whose round trips are counted on the wire.
WIRE = {"postgresql", "mariadb"}
# ZTS_BACKENDS (as in conftest.py) narrows the run; the FileStore, which needs
# no server, runs with SQLite.
_WANTED = {name.strip() for name in os.environ.get("ZTS_BACKENDS", "").split(",") if name.strip()}
SELECTED = [
    name for name in CONTENDERS if not _WANTED or (name if name != "file" else "sqlite") in _WANTED
]


def _require(backend: str) -> None:
    url = SERVER_URLS.get(backend)
    if url is None:
        return
    engine = make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"{backend} at {url} is not reachable: {type(exc).__name__}"
        if os.environ.get("ZTS_REQUIRE_BACKENDS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()


def _table_rows(stdout: str) -> list[tuple[str, str]]:
    """(operation, contender) of each data row of the printed 10-row table."""
    lines = stdout.split("== 10 rows ==", 1)[1].split("\nTargets:", 1)[0].strip().splitlines()
    rows, operation = [], ""
    for line in lines[1:]:  # after the header
        # The operation is printed on its first row only; columns are 2+ spaces apart.
        cells = re.split(r"\s{2,}", line.strip())
        if not line.startswith(" "):
            operation = cells.pop(0)
        rows.append((operation, cells[0]))
    return rows


def _run_bench(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["ZTS_BENCH_POSTGRES_URL"] = SERVER_URLS["postgresql"]
    env["ZTS_BENCH_MYSQL_URL"] = SERVER_URLS["mariadb"]
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("backend", SELECTED)
def test_quick_benchmark_runs(backend: str, tmp_path: Path) -> None:
    _require(backend)
    out = tmp_path / "bench.json"
    completed = _run_bench("--backends", backend, out=out)
    assert completed.returncode == 0, completed.stderr[-3000:]

    expected = {(label, name) for label in OPERATIONS.values() for name in CONTENDERS[backend]}
    printed = _table_rows(completed.stdout)
    assert sorted(printed) == sorted(expected), completed.stdout
    if backend == "mariadb" and not HAS_MYSQL_CONNECTOR:
        assert "skipped DBStore/mariadb" in completed.stdout

    data = json.loads(out.read_text())
    measured = {(r["label"], r["contender"]): r for r in data["results"]}
    assert set(measured) == expected
    assert data["cleanup_errors"] == []
    for (label, name), result in measured.items():
        assert result["n"] == 3 and result["median_ns"] > 0, (label, name)
        counts = result["counts"]
        if name.startswith("FileStore"):
            assert counts is None
            continue
        assert counts["statements"] is not None or name.startswith("DBStore"), (label, name)
        assert (counts["round_trips"] is not None) == (backend in WIRE), (label, name)
        if name.startswith("store/"):
            # The claims of docs/performance.md, at the smallest scale.
            assert counts["connections"] == 0, (label, name)
            if label.startswith("find_token"):
                trips = counts["round_trips"] if backend in WIRE else counts["statements"]
                assert trips == 1, (label, name, counts)


def test_quick_benchmark_through_the_delaying_proxy(tmp_path: Path) -> None:
    """``--proxy-delay-ms``: every round trip to a server costs twice the delay."""
    if "postgresql" not in SELECTED:
        pytest.skip("ZTS_BACKENDS leaves out postgresql")
    _require("postgresql")
    out = tmp_path / "bench.json"
    completed = _run_bench(
        "--proxy-delay-ms",
        "1",
        "--backends",
        "postgresql",
        "--operations",
        "find_user,save_update",
        out=out,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "servers behind a proxy adding 1 ms per chunk" in completed.stdout
    results = json.loads(out.read_text())["results"]
    assert {r["contender"] for r in results} == {"floor/postgresql", "store/postgresql"}
    for r in results:
        trips = r["counts"]["round_trips"]
        assert trips >= 1
        # Each round trip waits at least 1 ms each way.
        assert r["median_ns"] >= trips * 2_000_000, r


@pytest.mark.parametrize("backend", [name for name in SELECTED if name != "file"])
def test_quick_benchmark_with_encryption(backend: str, tmp_path: Path) -> None:
    """``--encryption``: this store with encryption on beside it, and the ratio of the two."""
    pytest.importorskip("cryptography", reason="--encryption needs the [encryption] extra")
    _require(backend)
    out = tmp_path / "bench.json"
    completed = _run_bench(
        "--encryption",
        "--backends",
        backend,
        "--operations",
        "find_user,find_refresh,find_access,find_by_id,save_update,save_insert",
        out=out,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    sealed = f"store+enc/{backend}"
    printed = _table_rows(completed.stdout)
    labels = [label for slug, label in OPERATIONS.items() if slug != "get_tokens"]
    assert sorted(name for label, name in printed if name == sealed) == [sealed] * len(labels)
    assert "enc / plain" in completed.stdout.split("== 10 rows ==", 1)[1].splitlines()[1]

    data = json.loads(out.read_text())
    assert data["settings"]["encryption"] is True
    assert data["cleanup_errors"] == []
    measured = {(r["label"], r["contender"]): r for r in data["results"]}
    for label in labels:
        plain, encrypted = measured[(label, f"store/{backend}")], measured[(label, sealed)]
        assert encrypted["n"] == 3 and encrypted["median_ns"] > 0, label
        counts = encrypted["counts"]
        assert counts["connections"] == 0, (label, counts)
        if label.startswith("find_token"):
            # A lookup by digest is still one statement, one round trip.
            trips = counts["round_trips"] if backend in WIRE else counts["statements"]
            assert trips == 1, (label, counts)
            assert counts["statements"] == plain["counts"]["statements"], label


def test_the_encrypted_benchmark_table_holds_sealed_rows(tmp_path: Path) -> None:
    """The encrypted store reads rows sealed as it seals them: by HMAC digest, then decrypting."""
    fernet = pytest.importorskip("cryptography.fernet")
    from bench.dataset import TableState, access_token, refresh_token, row_id
    from bench.tables import StoreTable

    from zoho_token_store.crypto import Keyring

    key = fernet.Fernet.generate_key().decode()
    keyring = Keyring([key])
    url = resolve_url(f"sqlite:///{tmp_path / 'bench.db'}")
    table = StoreTable("sqlite", url, "bench_enc", keys=(key,))
    table.create()
    try:
        table.grow(10)
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(token_table(MetaData(), "bench_enc"))).mappings().all()
        finally:
            engine.dispose()
        assert len(rows) == 10
        for row in rows:
            k = int(row["id"])
            assert row["key_id"] == keyring.key_id
            for name in ("client_secret", "refresh_token", "access_token"):
                assert row[name].startswith(f"zts1:{keyring.key_id}:"), (name, row["id"])
            assert row["refresh_token_digest"] == keyring.digest(refresh_token(k))
            assert row["access_token_digest"] == keyring.digest(access_token(k))

        store = SQLAlchemyTokenStore(url, table_name="bench_enc", encryption_keys=[key])
        try:
            found = store.find_token(TableState().by_refresh(7))
            assert found is not None and found.get_id() == row_id(7)
            assert found.get_access_token() == access_token(7)
        finally:
            store.close()
    finally:
        # Sealed rows and all: the downgrade would refuse to drop them.
        table.drop()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert not inspect(conn).has_table("bench_enc")
    finally:
        engine.dispose()
