"""The machine a run used, and the version of everything it measured."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

from sqlalchemy import URL, text

from bench.settings import Settings
from zoho_token_store.engine import make_engine, resolve_url

__all__ = ["describe"]

_PACKAGES = (
    "SQLAlchemy",
    "psycopg",
    "PyMySQL",
    "mysql-connector-python",
    "cryptography",
    "zohocrmsdk8-0",
    "zoho-token-store",
)


def describe(settings: Settings) -> dict[str, str]:
    """What the run ran on, as label: value, in a stable order."""
    info = {
        "CPU": _cpu_model(),
        "cores (nproc)": str(os.cpu_count()),
        "memory": _memory(),
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
    }
    if "postgresql" in settings.backends:
        info["PostgreSQL"] = _server_version(
            resolve_url(settings.postgres_url), "SHOW server_version"
        )
    if "mariadb" in settings.backends:
        info["MariaDB"] = _server_version(resolve_url(settings.mysql_url), "SELECT VERSION()")
    for package in _PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    info["store source"] = _source_version()
    return info


def _source_version() -> str:
    """The commit, and the blob of store.py measured (it may differ from the commit's)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else "?"

    store = "src/zoho_token_store/store.py"
    commit = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "src")
    blob = git("hash-object", store)[:10]
    state = "with uncommitted changes in src/" if changed else "clean"
    return f"commit {commit} ({state}); store.py blob {blob}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _server_version(url: URL, query: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(query)).scalar_one())
    except Exception as exc:  # reported, not fatal: the run itself will say more
        return f"unreachable ({type(exc).__name__})"
    finally:
        engine.dispose()
